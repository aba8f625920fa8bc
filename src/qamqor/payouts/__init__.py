"""Where a citizen's benefits are paid: the bank account (IBAN) on file, encrypted at rest."""
