-- Placeholder for migration 009 (another branch's); the lead drops this file when merging.
SELECT 1;
