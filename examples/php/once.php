<?php
// Guards a side effect with onceward from PHP, with nothing but curl and JSON: the
// Connect protocol on the sidecar's gRPC port. Claim the key; if acquired, run the
// effect, then Complete with its result (or Release if it failed); if completed
// earlier, use the stored result; if another caller holds it, wait retry_after.
//
//   php once.php [http://127.0.0.1:50051]        (ONCEWARD_TOKEN: a tenant's token)
declare(strict_types=1);

final class OncewardError extends RuntimeException {}

/** One Connect call of onceward.v1.Onceward/$method; the decoded reply. */
function onceward_call(string $base, string $method, array $request): array
{
    $headers = ['Content-Type: application/json', 'Connect-Protocol-Version: 1', 'Connect-Timeout-Ms: 10000'];
    $token = getenv('ONCEWARD_TOKEN');
    if ($token !== false && $token !== '') {
        $headers[] = "Authorization: Bearer $token";
    }
    $curl = curl_init("$base/onceward.v1.Onceward/$method");
    curl_setopt_array($curl, [
        CURLOPT_POST => true,
        CURLOPT_POSTFIELDS => json_encode($request, JSON_THROW_ON_ERROR | JSON_FORCE_OBJECT),
        CURLOPT_HTTPHEADER => $headers,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_TIMEOUT => 15,
    ]);
    $body = curl_exec($curl);
    $status = curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
    $error = curl_error($curl);
    curl_close($curl);
    if ($body === false) {
        throw new OncewardError("unavailable: $error");
    }
    $reply = json_decode($body, true, 32, JSON_THROW_ON_ERROR);
    if ($status !== 200) {
        throw new OncewardError("{$reply['code']}: " . ($reply['message'] ?? ''));
    }
    return $reply;
}

/** A Duration string ("0.250s") in microseconds. */
function micros(string $duration): int
{
    return (int) round((float) rtrim($duration, 's') * 1e6);
}

/**
 * Runs $effect(fencing token) at most once for ($namespace, $key); returns
 * [result, replayed]. An effect that throws did not happen: the key is released.
 */
function once(string $base, string $namespace, string $key, callable $effect): array
{
    $claimant = base64_encode(random_bytes(16));
    for ($attempt = 1; ; $attempt++) {
        $claim = onceward_call($base, 'Claim', [
            'namespace' => $namespace, 'key' => $key, 'lease' => '30s',
            'claimant' => $claimant, 'attempt' => $attempt,
        ]);
        switch ($claim['outcome']) {
            case 'OUTCOME_COMPLETED':
                return [base64_decode($claim['response'] ?? ''), true];
            case 'OUTCOME_FINGERPRINT_MISMATCH':
                throw new OncewardError("$namespace/$key was used with a different fingerprint");
            case 'OUTCOME_IN_PROGRESS':
                // At least retry_after, plus jitter so waiters do not return in step.
                usleep(micros($claim['retryAfter'] ?? '0s') + random_int(10_000, 50_000));
                continue 2;
            case 'OUTCOME_ACQUIRED':
                break 2;
        }
    }
    $token = $claim['fencingToken'];
    $held = ['namespace' => $namespace, 'key' => $key, 'fencingToken' => $token];
    try {
        $result = $effect($token);
    } catch (Throwable $failure) {
        onceward_call($base, 'Release', $held);
        throw $failure;
    }
    onceward_call($base, 'Complete', $held + ['response' => base64_encode($result)]);
    return [$result, false];
}

$base = $argv[1] ?? 'http://127.0.0.1:50051';
$effects = getenv('EFFECT_LOG') ?: sys_get_temp_dir() . '/onceward-php-effects.log';
[$result, $replayed] = once($base, 'sms', 'welcome-user-46', function (string $token) use ($effects): string {
    // The side effect: here, a line in a log file instead of an SMS.
    file_put_contents($effects, "sent with token $token\n", FILE_APPEND);
    return 'sms-5';
});
echo ($replayed ? 'already sent' : 'sent') . " $result\n";
