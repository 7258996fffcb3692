-- Who made each claim (SPEC section 10): a retried Claim whose claimant matches the
-- live claim's is acquired again with the same token. Empty for rows claimed before
-- claimants existed, and an empty claimant matches nothing. A constant default is a
-- catalog-only change: no table rewrite.
ALTER TABLE onceward_records ADD COLUMN claimant bytea NOT NULL DEFAULT ''::bytea;
