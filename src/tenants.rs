//! Tenants: who may call, which namespaces each may use, and how fast.
//!
//! Tenants come from the `--config` TOML file. Each has a name, the SHA-256 of its
//! bearer token (never the token itself, so the file is not a secret), the namespaces
//! it may use, and an optional request rate. A presented token is hashed and compared
//! against every tenant's hash in constant time, so response timing reveals nothing
//! about which bytes matched. With no tenants configured, authentication is off.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::domain::Namespace;

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The callers allowed in.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
}

/// One `[[tenants]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// A name for logs.
    pub name: String,
    /// Hex SHA-256 of the tenant's bearer token (`onceward new-tenant-token` prints one).
    pub token_sha256: String,
    /// The namespaces the tenant may use; `"*"` grants all.
    pub namespaces: Vec<String>,
    /// Requests per second the tenant may make (any RPC); absent: unlimited.
    pub rate_limit_per_second: Option<f64>,
    /// How many requests may arrive at once above the rate; default: one second's worth.
    pub rate_limit_burst: Option<f64>,
    /// Whether the tenant may call the Admin service (for its own namespaces).
    #[serde(default)]
    pub admin: bool,
}

impl ConfigFile {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }
}

/// A caller the gatekeeper let in.
#[derive(Debug)]
pub struct Tenant {
    name: String,
    token_sha256: [u8; 32],
    namespaces: Namespaces,
    admin: bool,
    rate: Option<TokenBucket>,
}

#[derive(Debug)]
enum Namespaces {
    All,
    Only(HashSet<String>),
}

impl Tenant {
    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the tenant may use `namespace`.
    pub fn may_use(&self, namespace: &Namespace) -> bool {
        match &self.namespaces {
            Namespaces::All => true,
            Namespaces::Only(granted) => granted.contains(namespace.as_str()),
        }
    }
}

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `authorization: Bearer …`, or a token no tenant has.
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// The tenant may not use this namespace.
    #[error("namespace {namespace:?} is not granted to this caller")]
    NotGranted {
        /// The namespace asked for.
        namespace: String,
    },
    /// The Admin service needs a tenant marked `admin = true`.
    #[error("the Admin service needs a tenant with admin = true")]
    NotAdmin,
    /// The tenant is over its request rate.
    #[error("rate limit exceeded; retry in {}ms", .retry_after.as_millis().max(1))]
    RateLimited {
        /// How long until a request would be admitted.
        retry_after: Duration,
    },
}

/// The tenants, or nobody (authentication off).
#[derive(Debug)]
pub struct Gatekeeper {
    tenants: Vec<Tenant>,
}

/// Who is calling: a tenant, or anyone when authentication is off.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// Authentication is off: every namespace is open.
    Anyone,
    /// An authenticated tenant.
    Tenant(&'a Tenant),
}

impl Caller<'_> {
    /// Checks that the caller may use the Admin service on `namespace`: any caller
    /// when authentication is off, else an admin tenant granted the namespace.
    pub fn authorize_admin(&self, namespace: &Namespace) -> Result<(), Refusal> {
        match self {
            Caller::Tenant(tenant) if !tenant.admin => Err(Refusal::NotAdmin),
            _ => self.authorize(namespace),
        }
    }

    /// Checks that the caller may use `namespace`.
    pub fn authorize(&self, namespace: &Namespace) -> Result<(), Refusal> {
        match self {
            Caller::Anyone => Ok(()),
            Caller::Tenant(tenant) if tenant.may_use(namespace) => Ok(()),
            Caller::Tenant(_) => Err(Refusal::NotGranted {
                namespace: namespace.to_string(),
            }),
        }
    }
}

impl Gatekeeper {
    /// Builds the gatekeeper from a config file's tenants.
    pub fn new(config: ConfigFile) -> anyhow::Result<Self> {
        let mut tenants = Vec::with_capacity(config.tenants.len());
        let mut names = HashSet::new();
        for tenant in config.tenants {
            anyhow::ensure!(
                names.insert(tenant.name.clone()),
                "tenant {:?} is configured twice",
                tenant.name
            );
            let hash = hex::decode(tenant.token_sha256.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .with_context(|| {
                    format!(
                        "tenant {:?}: token_sha256 must be 64 hex digits (run `onceward new-tenant-token`)",
                        tenant.name
                    )
                })?;
            let namespaces = if tenant.namespaces.iter().any(|n| n == "*") {
                Namespaces::All
            } else {
                for namespace in &tenant.namespaces {
                    Namespace::try_from(namespace.clone())
                        .with_context(|| format!("tenant {:?}", tenant.name))?;
                }
                Namespaces::Only(tenant.namespaces.into_iter().collect())
            };
            let rate = match tenant.rate_limit_per_second {
                Some(rate) => {
                    anyhow::ensure!(
                        rate > 0.0,
                        "tenant {:?}: rate_limit_per_second must be positive",
                        tenant.name
                    );
                    Some(TokenBucket::new(
                        rate,
                        tenant.rate_limit_burst.unwrap_or(rate),
                    ))
                }
                None => None,
            };
            tenants.push(Tenant {
                name: tenant.name,
                token_sha256: hash,
                namespaces,
                admin: tenant.admin,
                rate,
            });
        }
        Ok(Self { tenants })
    }

    /// Whether any tenant is configured (authentication on).
    pub fn is_enabled(&self) -> bool {
        !self.tenants.is_empty()
    }

    /// The tenant names, for the startup log.
    pub fn tenant_names(&self) -> impl Iterator<Item = &str> {
        self.tenants.iter().map(Tenant::name)
    }

    /// Identifies the caller from its bearer token (`None`: no token sent) and takes
    /// one request from its rate budget.
    pub fn admit(&self, bearer: Option<&str>) -> Result<Caller<'_>, Refusal> {
        let caller = self.authenticate(bearer)?;
        if let Caller::Tenant(Tenant {
            rate: Some(rate), ..
        }) = caller
        {
            rate.take()
                .map_err(|retry_after| Refusal::RateLimited { retry_after })?;
        }
        Ok(caller)
    }

    /// Identifies the caller from its bearer token, charging nothing: the transport
    /// uses it to refuse an unknown caller on its headers, before reading a body, and
    /// [`Gatekeeper::admit`] charges the budget once the request is read.
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Caller<'_>, Refusal> {
        if !self.is_enabled() {
            return Ok(Caller::Anyone);
        }
        let presented: [u8; 32] = Sha256::digest(bearer.ok_or(Refusal::Unauthenticated)?).into();
        // Compare against every tenant, without stopping early, in constant time.
        let mut found = None;
        for tenant in &self.tenants {
            if bool::from(tenant.token_sha256.ct_eq(&presented)) {
                found = Some(tenant);
            }
        }
        found.map(Caller::Tenant).ok_or(Refusal::Unauthenticated)
    }
}

/// A fresh random bearer token and its SHA-256, for `onceward new-tenant-token`.
pub fn new_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = hex::encode(bytes);
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    // A std Mutex: the critical section is a few arithmetic operations, never awaits.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token, or says how long until one is available.
    fn take(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gatekeeper(toml_text: &str) -> Gatekeeper {
        Gatekeeper::new(toml::from_str(toml_text).unwrap()).unwrap()
    }

    fn hash(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    fn ns(name: &str) -> Namespace {
        Namespace::try_from(name.to_owned()).unwrap()
    }

    #[test]
    fn with_no_tenants_everyone_may_use_everything() {
        let open = gatekeeper("");
        assert!(!open.is_enabled());
        let caller = open.admit(None).unwrap();
        assert!(caller.authorize(&ns("anything")).is_ok());
    }

    #[test]
    fn a_tenant_is_known_by_its_token_and_kept_to_its_namespaces() {
        let gate = gatekeeper(&format!(
            r#"
            [[tenants]]
            name = "payments"
            token_sha256 = "{}"
            namespaces = ["payments", "refunds"]
            [[tenants]]
            name = "ops"
            token_sha256 = "{}"
            namespaces = ["*"]
            "#,
            hash("pay-token"),
            hash("ops-token")
        ));
        assert_eq!(gate.admit(None).unwrap_err(), Refusal::Unauthenticated);
        assert_eq!(
            gate.admit(Some("wrong")).unwrap_err(),
            Refusal::Unauthenticated
        );
        let payments = gate.admit(Some("pay-token")).unwrap();
        assert!(payments.authorize(&ns("refunds")).is_ok());
        assert!(matches!(
            payments.authorize(&ns("mail")),
            Err(Refusal::NotGranted { .. })
        ));
        assert!(
            gate.admit(Some("ops-token"))
                .unwrap()
                .authorize(&ns("mail"))
                .is_ok()
        );
    }

    #[test]
    fn a_tenant_over_its_rate_is_told_how_long_to_wait() {
        let gate = gatekeeper(&format!(
            r#"
            [[tenants]]
            name = "slow"
            token_sha256 = "{}"
            namespaces = ["*"]
            rate_limit_per_second = 10
            rate_limit_burst = 2
            "#,
            hash("t")
        ));
        assert!(gate.admit(Some("t")).is_ok());
        assert!(gate.admit(Some("t")).is_ok());
        match gate.admit(Some("t")).unwrap_err() {
            Refusal::RateLimited { retry_after } => {
                assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}")
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }

    #[test]
    fn authenticating_a_caller_takes_nothing_from_its_rate_budget() {
        let gate = gatekeeper(&format!(
            r#"
            [[tenants]]
            name = "slow"
            token_sha256 = "{}"
            namespaces = ["*"]
            rate_limit_per_second = 1
            rate_limit_burst = 2
            "#,
            hash("t")
        ));
        assert_eq!(
            gate.authenticate(Some("wrong")).unwrap_err(),
            Refusal::Unauthenticated
        );
        for _ in 0..10 {
            assert!(matches!(
                gate.authenticate(Some("t")),
                Ok(Caller::Tenant(_))
            ));
        }
        assert!(gate.admit(Some("t")).is_ok());
        assert!(gate.admit(Some("t")).is_ok(), "the whole burst is left");
        assert!(gate.admit(Some("t")).is_err());
    }

    #[test]
    fn bad_configs_are_refused_with_the_tenant_named() {
        let bad_hash = r#"
            [[tenants]]
            name = "x"
            token_sha256 = "not-hex"
            namespaces = ["a"]
        "#;
        let error = Gatekeeper::new(toml::from_str(bad_hash).unwrap()).unwrap_err();
        assert!(format!("{error:#}").contains("\"x\""));
        assert!(toml::from_str::<ConfigFile>("[[tenants]]\nname = 1").is_err());
    }

    #[test]
    fn new_tokens_hash_to_what_the_config_expects() {
        let (token, expected) = new_token();
        assert_eq!(token.len(), 64);
        assert_eq!(hash(&token), expected);
    }
}
