"""fieldsync's domain: community wardens' and PCSOs' street audits and ASB observations."""
