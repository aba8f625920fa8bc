"""The Social Wallet: earmarked benefits on a double-entry ledger (see docs/wallet.md)."""
