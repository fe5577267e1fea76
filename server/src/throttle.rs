//! Rate limits on what clients can make the server do, kept in memory per process (`governor`'s GCRA
//! limiters): the unauthenticated OAuth endpoints per client address and in total, refused webhook
//! deliveries per client address, and signed provider events per account (the ingest budget).
//!
//! Client addresses come from the socket, or from `X-Forwarded-For` only when the socket's peer is one
//! of the operator's `TRUSTED_PROXIES`. IPv6 clients are keyed by their /64, the block one host
//! usually holds, so that walking through one's own addresses does not multiply the budget.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::store::AccountId;

/// How long a client address that used up its webhook-failure budget is turned away without a look.
const FAILURE_BLOCK_MIN: Duration = Duration::from_secs(1);

/// The client of a request, as [`Throttle::client`] determined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr
where
    Throttle: axum::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let throttle = <Throttle as axum::extract::FromRef<S>>::from_ref(state);
        // A request served without a socket (in-process tests) has no peer: it counts as one client.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
        Ok(ClientAddr(throttle.client(peer, &parts.headers)))
    }
}

/// The process's rate limiters; cheap to clone.
#[derive(Clone)]
pub struct Throttle {
    inner: Arc<Inner>,
}

struct Inner {
    trusted_proxies: Vec<IpAddr>,
    oauth_per_address: DefaultKeyedRateLimiter<IpAddr>,
    oauth_total: DefaultDirectRateLimiter,
    webhook_failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses over their failure budget, and until when they are turned away.
    blocked: moka::sync::Cache<IpAddr, std::time::Instant>,
    ingest: DefaultKeyedRateLimiter<AccountId>,
    /// Call lists made per user (each reads Kommo: up to three requests of the account's budget).
    call_lists: DefaultKeyedRateLimiter<(AccountId, i64)>,
}

/// Call lists one user may make: a burst of this many, then one per [`CALL_LIST_PERIOD`].
const CALL_LIST_BURST: u32 = 5;
const CALL_LIST_PERIOD: Duration = Duration::from_secs(6);

fn nonzero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value.max(1)).expect("at least 1")
}

impl Throttle {
    pub fn new(limits: &Limits) -> Throttle {
        let per_minute = |count: u32| Quota::per_minute(nonzero(count)).allow_burst(nonzero(count));
        Throttle {
            inner: Arc::new(Inner {
                trusted_proxies: limits.trusted_proxies.clone(),
                oauth_per_address: RateLimiter::keyed(per_minute(limits.oauth_per_address_per_minute)),
                oauth_total: RateLimiter::direct(
                    Quota::per_second(nonzero(limits.oauth_total_per_second))
                        .allow_burst(nonzero(limits.oauth_total_per_second)),
                ),
                webhook_failures: RateLimiter::keyed(per_minute(limits.webhook_failures_per_address_per_minute)),
                blocked: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(Duration::from_secs(60))
                    .build(),
                ingest: RateLimiter::keyed(
                    Quota::per_second(nonzero(limits.ingest_per_account_per_second))
                        .allow_burst(nonzero(limits.ingest_burst_per_account)),
                ),
                call_lists: RateLimiter::keyed(
                    Quota::with_period(CALL_LIST_PERIOD).expect("a period").allow_burst(nonzero(CALL_LIST_BURST)),
                ),
            }),
        }
    }

    /// The client behind a connection from `peer`: the peer itself, or, when the peer is a trusted
    /// proxy, the right-most `X-Forwarded-For` address that is not a trusted proxy.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = &self.inner.trusted_proxies;
        if !trusted.contains(&peer) {
            return key(peer);
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if trusted.contains(&ip) => continue,
                Ok(ip) => return key(ip),
                // A hop we cannot read: everything left of it was written by whoever sent it.
                Err(_) => break,
            }
        }
        key(peer)
    }

    /// One install callback or consent start from `client`: `Err(wait)` when over its own budget or
    /// over the total.
    pub fn oauth(&self, client: IpAddr) -> Result<(), Duration> {
        // Each limiter's own clock (making a clock calibrates it: far too slow for every request).
        let now = self.inner.oauth_per_address.clock().now();
        self.inner.oauth_per_address.check_key(&client).map_err(|not_until| not_until.wait_time_from(now))?;
        let now = self.inner.oauth_total.clock().now();
        self.inner.oauth_total.check().map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Whether `client` is turned away from the webhook path for now (too many refused deliveries).
    pub fn webhook_blocked(&self, client: IpAddr) -> Option<Duration> {
        let until = self.inner.blocked.get(&client)?;
        until.checked_duration_since(std::time::Instant::now())
    }

    /// Counts one refused webhook delivery (unknown hook id, bad signature) against `client`.
    pub fn webhook_failed(&self, client: IpAddr) {
        let now = self.inner.webhook_failures.clock().now();
        if let Err(not_until) = self.inner.webhook_failures.check_key(&client) {
            let wait = not_until.wait_time_from(now).max(FAILURE_BLOCK_MIN);
            self.inner.blocked.insert(client, std::time::Instant::now() + wait);
        }
    }

    /// One signed provider event of `account`: `Err(wait)` when the account used up its ingest budget.
    pub fn ingest(&self, account: AccountId) -> Result<(), Duration> {
        let now = self.inner.ingest.clock().now();
        self.inner.ingest.check_key(&account).map_err(|not_until| not_until.wait_time_from(now))
    }

    /// One call list made by `user` of `account`: `Err(wait)` past their budget.
    pub fn call_list(&self, account: AccountId, user_id: i64) -> Result<(), Duration> {
        let now = self.inner.call_lists.clock().now();
        self.inner.call_lists.check_key(&(account, user_id)).map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Forgets the state of keys that are back to a full budget, so memory follows recent clients only.
    pub fn prune(&self) {
        for limiter in [&self.inner.oauth_per_address, &self.inner.webhook_failures] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.inner.ingest.retain_recent();
        self.inner.ingest.shrink_to_fit();
        self.inner.call_lists.retain_recent();
        self.inner.call_lists.shrink_to_fit();
        self.inner.blocked.run_pending_tasks();
    }
}

/// IPv4 addresses as they are; IPv6 by their /64 (IPv4-mapped ones as IPv4).
pub(crate) fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn limits() -> Limits {
        Limits {
            trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
            oauth_per_address_per_minute: 3,
            oauth_total_per_second: 5,
            webhook_failures_per_address_per_minute: 2,
            ingest_per_account_per_second: 1,
            ingest_burst_per_account: 4,
            ..Limits::default()
        }
    }

    fn forwarded(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let throttle = Throttle::new(&limits());
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // A client talking to us directly cannot pick its address.
        assert_eq!(throttle.client(stranger, &forwarded("198.51.100.1")), stranger);
        // Behind the proxy: the right-most address the proxy did not add itself.
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            throttle.client(proxy, &forwarded("1.1.1.1, 198.51.100.7")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            throttle.client(proxy, &forwarded("198.51.100.7, 10.0.0.1")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(throttle.client(proxy, &HeaderMap::new()), proxy);
        assert_eq!(throttle.client(proxy, &forwarded("junk")), proxy);
        // One IPv6 host's /64 is one client.
        let a = throttle.client("2001:db8::1".parse().unwrap(), &HeaderMap::new());
        let b = throttle.client("2001:db8::ffff:2".parse().unwrap(), &HeaderMap::new());
        assert_eq!(a, b);
    }

    #[test]
    fn oauth_budget_is_per_address_and_in_total() {
        let throttle = Throttle::new(&limits());
        let one: IpAddr = "203.0.113.1".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.oauth(one).is_ok());
        }
        let wait = throttle.oauth(one).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20), "{wait:?}");
        // Another address still has its own budget, until the total runs out.
        let others: Vec<IpAddr> = (2..10).map(|n| IpAddr::from([203, 0, 113, n])).collect();
        let passed = others.iter().filter(|ip| throttle.oauth(**ip).is_ok()).count();
        assert_eq!(passed, 5 - 3, "the total of 5/s is shared by every address");
    }

    #[test]
    fn only_failures_block_an_address_and_budgets_are_per_account() {
        let throttle = Throttle::new(&limits());
        let pbx: IpAddr = "198.51.100.20".parse().unwrap();
        assert_eq!(throttle.webhook_blocked(pbx), None);
        throttle.webhook_failed(pbx);
        throttle.webhook_failed(pbx);
        assert_eq!(throttle.webhook_blocked(pbx), None, "two failures fit the budget of 2/min");
        throttle.webhook_failed(pbx);
        assert!(throttle.webhook_blocked(pbx).is_some());
        assert_eq!(throttle.webhook_blocked("198.51.100.21".parse().unwrap()), None);

        let (a, b) = (AccountId::for_tests(1), AccountId::for_tests(2));
        for _ in 0..4 {
            assert!(throttle.ingest(a).is_ok());
        }
        assert!(throttle.ingest(a).is_err(), "a's burst of 4 is used up");
        assert!(throttle.ingest(b).is_ok(), "b keeps its own budget");
    }
}
