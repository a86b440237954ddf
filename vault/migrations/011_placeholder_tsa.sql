-- Placeholder: keeps the numbering contiguous on this branch; the lead drops it when merging.
SELECT 1;
