-- The publicity role (vault.policy.decide): a principal of the publicity module that may list,
-- read, stream and download only redacted copies a legal reviewer released, in its cases.
ALTER TABLE principals DROP CONSTRAINT principals_roles_check;
ALTER TABLE principals ADD CONSTRAINT principals_roles_check
    CHECK (roles <@ ARRAY['dock', 'officer', 'reviewer', 'legal_reviewer',
                          'case_system', 'auditor', 'admin', 'publicity']);
