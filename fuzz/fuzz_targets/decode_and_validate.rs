//! Decodes arbitrary bytes as each request message and runs the server's own parsing
//! on whatever decodes: it must return a value or a validation error, never panic.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use onceward::domain::DurationBounds;
use onceward::domain::Limits;
use onceward::grpc::convert;
use onceward::proto;
use prost::Message as _;

const LIMITS: Limits = Limits {
    lease: DurationBounds {
        default: Duration::from_secs(30),
        max: Duration::from_secs(3600),
    },
    retention: DurationBounds {
        default: Duration::from_secs(86_400),
        max: Duration::from_secs(30 * 86_400),
    },
    max_response_bytes: 256 * 1024,
    max_batch_items: 1000,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = proto::ClaimRequest::decode(data) {
        let _ = convert::claim_command(request, &LIMITS);
    }
    if let Ok(request) = proto::CompleteRequest::decode(data) {
        let _ = convert::complete_command(request, &LIMITS);
    }
    if let Ok(request) = proto::ExtendLeaseRequest::decode(data) {
        let _ = convert::record_id(request.namespace, request.key);
        let _ = convert::lease(request.lease, &LIMITS);
    }
    if let Ok(request) = proto::LookupRequest::decode(data) {
        let _ = convert::record_id(request.namespace, request.key);
    }
});
