-- Who made each claim (SPEC section 10): a retried Claim whose claimant matches the
-- live claim's is acquired again with the same token. Empty for rows claimed before
-- claimants existed, and an empty claimant matches nothing.
--
-- `reentered` (0 or 1) is set when a claim is handed back to its claimant that way. A
-- claim that committed after its first caller gave up is released only while it is
-- unset: once its claimant has it back, somebody holds it. A takeover clears it.
ALTER TABLE onceward_records ADD COLUMN claimant BLOB NOT NULL DEFAULT x'';
ALTER TABLE onceward_records ADD COLUMN reentered INTEGER NOT NULL DEFAULT 0;
