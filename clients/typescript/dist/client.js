// The client: the generated API with retries, and the `once` guard on top of it.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ClaimRequestSchema, Onceward, Outcome, } from "./gen/onceward/v1/onceward_pb.js";
import { Blocked, FingerprintMismatch, NotStored, OncewardError, OverBudget, RetryBudgetExhausted, StillInProgress, Unavailable, describe, finalError, } from "./errors.js";
import { DEFAULT_CONFIG, RetryBudget, backoff, inProgressWait, sleep, } from "./retry.js";
/** Random bytes in the claimant of each logical Claim. */
export const CLAIMANT_BYTES = 16;
const utf8 = new TextEncoder();
function bytes(value) {
    return typeof value === "string" ? utf8.encode(value) : value;
}
/** onceward's client over any Connect transport (gRPC, Connect or gRPC-Web). */
export class Client {
    /** The generated API on the same transport, without retries. */
    api;
    config;
    budget;
    constructor(transport, config = {}) {
        this.api = createClient(Onceward, transport);
        this.config = Object.freeze({ ...DEFAULT_CONFIG, ...config });
        this.budget = new RetryBudget(this.config.retryRatio, this.config.minRetriesPerSecond, this.config.maxRetryTokens);
    }
    /**
     * One Claim (failed calls retried; IN_PROGRESS is returned, not waited on). Every
     * retry carries the same random claimant and the next attempt number, so a retry
     * after a lost reply is ACQUIRED again with the same fencing token.
     */
    async claim(namespace, key, fingerprint = new Uint8Array(), options = {}) {
        const base = create(ClaimRequestSchema, {
            namespace,
            key,
            fingerprint: bytes(fingerprint),
            lease: durationFromMs(this.config.leaseMs),
            claimant: crypto.getRandomValues(new Uint8Array(CLAIMANT_BYTES)),
            subject: options.subject ?? "",
            cost: BigInt(options.cost ?? 0),
        });
        return this.call((attempt, callOptions) => this.api.claim({ ...base, attempt }, callOptions), options.signal);
    }
    /**
     * Runs `effect(fencingToken)` at most once for (namespace, key), across every caller
     * of every sidecar sharing the ledger. Returns the effect's result (`replayed`
     * false) or, if an earlier call ran it, the stored result (`replayed` true). If the
     * effect throws, it did not happen: the claim is released and the error propagates.
     */
    async once(namespace, key, fingerprint, effect, options = {}) {
        const started = performance.now();
        let answer;
        for (let waits = 0;; waits++) {
            answer = await this.claim(namespace, key, fingerprint, options);
            if (answer.outcome === Outcome.ACQUIRED) {
                break;
            }
            if (answer.outcome === Outcome.COMPLETED) {
                return { response: answer.response, replayed: true };
            }
            if (answer.outcome === Outcome.FINGERPRINT_MISMATCH) {
                throw new FingerprintMismatch(`${namespace}/${key} was used with a different fingerprint`);
            }
            if (answer.outcome === Outcome.BLOCKED) {
                throw new Blocked(answer.reason);
            }
            if (answer.outcome === Outcome.OVER_BUDGET) {
                throw new OverBudget(answer.reason, answer.retryAfter ? durationMs(answer.retryAfter) : 0);
            }
            if (answer.outcome !== Outcome.IN_PROGRESS) {
                throw new OncewardError(`unexpected claim outcome ${answer.outcome}`);
            }
            const retryAfter = answer.retryAfter ? durationMs(answer.retryAfter) : 0;
            const wait = inProgressWait(this.config, retryAfter, waits);
            const waited = performance.now() - started;
            if (waited + wait > this.config.inProgressTimeoutMs) {
                throw new StillInProgress(Math.round(waited));
            }
            await sleep(wait, options.signal);
        }
        const token = answer.fencingToken;
        const keeper = new LeaseKeeper(this, namespace, key, token);
        try {
            let response;
            try {
                response = bytes(await effect(token));
            }
            catch (error) {
                keeper.stop();
                await this.release(namespace, key, token);
                throw error;
            }
            const retention = this.config.retentionMs;
            try {
                await this.call((_, callOptions) => this.api.complete({
                    namespace,
                    key,
                    fencingToken: token,
                    response,
                    retention: retention === undefined ? undefined : durationFromMs(retention),
                }, callOptions), options.signal, performance.now() + this.config.completeTimeoutMs);
            }
            catch (cause) {
                if (cause instanceof OncewardError) {
                    throw new NotStored(response, cause);
                }
                throw cause;
            }
            return { response, replayed: false };
        }
        finally {
            keeper.stop();
        }
    }
    /** Releases a claim whose effect did not happen; failures leave it to its lease. */
    async release(namespace, key, fencingToken) {
        try {
            await this.call((_, callOptions) => this.api.release({ namespace, key, fencingToken }, callOptions));
        }
        catch {
            // Lost: someone else holds it or it is gone. Otherwise the lease frees it.
        }
    }
    /**
     * One RPC with retries: backoff with full jitter and, unless a `deadline` is given
     * (Complete after the effect ran), the attempt cap and the retry budget.
     * `attempt(n, callOptions)` sends attempt n (1 for the first).
     */
    async call(attempt, signal, deadline) {
        this.budget.deposit();
        for (let attempts = 1;; attempts++) {
            let last;
            try {
                return await attempt(attempts, { timeoutMs: this.config.rpcTimeoutMs, signal });
            }
            catch (thrown) {
                if (signal?.aborted) {
                    throw thrown;
                }
                const error = ConnectError.from(thrown);
                const final = finalError(error);
                if (final !== undefined) {
                    throw final;
                }
                last = describe(error);
            }
            const pause = backoff(this.config, attempts - 1);
            if (deadline === undefined) {
                if (attempts >= this.config.maxAttempts) {
                    throw new Unavailable(attempts, last);
                }
                if (!this.budget.withdraw()) {
                    throw new RetryBudgetExhausted(attempts, last);
                }
            }
            else if (performance.now() + pause >= deadline) {
                throw new Unavailable(attempts, last);
            }
            await sleep(pause, signal);
        }
    }
}
/** Extends a lease every third of it while the effect runs. */
class LeaseKeeper {
    timer;
    extending = false;
    lost = false;
    constructor(client, namespace, key, fencingToken) {
        const { leaseMs, rpcTimeoutMs } = client.config;
        const lease = durationFromMs(leaseMs);
        this.timer = setInterval(async () => {
            if (this.extending || this.lost) {
                return;
            }
            this.extending = true;
            try {
                await client.api.extendLease({ namespace, key, fencingToken, lease }, { timeoutMs: rpcTimeoutMs });
            }
            catch (error) {
                // Lost: Complete will say so. Anything else: the next tick tries again (two
                // more before the lease ends).
                if (ConnectError.from(error).code === Code.FailedPrecondition) {
                    this.lost = true;
                    this.stop();
                }
            }
            finally {
                this.extending = false;
            }
        }, leaseMs / 3);
    }
    stop() {
        clearInterval(this.timer);
    }
}
