"""Privacy: identities and sign-in, the authorisation policy, the access log, consents and
access anomalies. The choke point for reading personal data is
``qamqor.privacy.access.open_personal_data``."""
