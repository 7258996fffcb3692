-- Who made each claim (SPEC section 10): a retried Claim whose claimant matches the
-- live claim's is acquired again with the same token. Empty for rows claimed before
-- claimants existed, and an empty claimant matches nothing.
--
-- `reentered` is set when a claim is handed back to its claimant that way. A claim
-- that committed after its first caller gave up is released only while it is unset:
-- once its claimant has it back, somebody holds it. A takeover clears it.
--
-- Constant defaults are catalog-only changes: no table rewrite.
ALTER TABLE onceward_records
    ADD COLUMN claimant bytea NOT NULL DEFAULT ''::bytea,
    ADD COLUMN reentered boolean NOT NULL DEFAULT false;
