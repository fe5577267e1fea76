//! The egress policy for provider addresses, the one copy: which schemes, host names and IP addresses
//! the server may reach at an address an admin typed. The settings validation (widget and server)
//! applies it to the literal URL, and the server's resolver applies it again to every address a name
//! resolves to, at connect time. No I/O here: resolving is the server's.
//!
//! By default: https to public addresses only. With `PROVIDER_ALLOW_INSECURE_LOCAL=true` (the operator's
//! setting for a local stand-in) also http, this host and private networks; never the cloud metadata
//! services, link-local, or the special-purpose ranges, whatever the setting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where provider requests may go. The default is the production rule: https to public addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Allows http, loopback and private-network addresses and names: an explicit operator setting
    /// (`PROVIDER_ALLOW_INSECURE_LOCAL=true`) for the local provider stand-in. Metadata services,
    /// link-local and special-purpose addresses stay forbidden even then.
    pub allow_insecure_local: bool,
}

/// What an address or a name reaches, for the egress policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Globally routable unicast; a name under a public suffix.
    Public,
    /// This host or a private network: loopback, RFC 1918, CGNAT, IPv6 unique-local; `localhost`,
    /// single-label names and the internal zones (`.internal`, `.local`, `.lan`, `home.arpa`, ...).
    Local,
    /// Never a provider: unspecified, link-local and cloud metadata (by address and by name),
    /// broadcast, multicast, documentation, benchmarking, reserved and translation ranges.
    Forbidden,
}

impl EgressPolicy {
    /// Whether a URL with this scheme may be used (`https`, or `http` with the local setting).
    pub fn allows_scheme(self, https: bool) -> bool {
        https || self.allow_insecure_local
    }

    /// Whether the server may connect to `ip`.
    pub fn allows(self, ip: IpAddr) -> bool {
        self.allows_scope(address_scope(ip))
    }

    /// Whether a URL may name this host (lower-case or not, with or without a trailing dot). The
    /// addresses it resolves to are checked again with [`EgressPolicy::allows`].
    pub fn allows_name(self, name: &str) -> bool {
        self.allows_scope(name_scope(name))
    }

    fn allows_scope(self, scope: Scope) -> bool {
        match scope {
            Scope::Public => true,
            Scope::Local => self.allow_insecure_local,
            Scope::Forbidden => false,
        }
    }
}

/// Classifies `ip`. IPv4 inside IPv6 is classified as that IPv4 address when mapped (`::ffff:0:0/96`);
/// behind a translator (NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) it is only ever public or forbidden.
pub fn address_scope(ip: IpAddr) -> Scope {
    match ip {
        IpAddr::V4(v4) => ipv4_scope(v4),
        IpAddr::V6(v6) => ipv6_scope(v6),
    }
}

/// Classifies a host name (not an IP literal).
pub fn name_scope(name: &str) -> Scope {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let under = |zone: &str| name == zone || name.strip_suffix(zone).is_some_and(|head| head.ends_with('.'));
    // The cloud metadata services' own names (GCP, AWS); they resolve to link-local addresses, which
    // the resolver refuses anyway, but they are never a provider.
    let metadata =
        ["metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"];
    if metadata.contains(&name.as_str()) {
        return Scope::Forbidden;
    }
    // Loopback, cluster- and cloud-internal, mDNS and home networks; single-label names resolve
    // through the server's search domains (a container's neighbours).
    let internal = ["localhost", "internal", "local", "localdomain", "home.arpa", "lan", "intranet", "corp"];
    if !name.contains('.') || internal.into_iter().any(under) {
        return Scope::Local;
    }
    Scope::Public
}

fn ipv4_scope(ip: Ipv4Addr) -> Scope {
    use Scope::{Forbidden, Local, Public};
    // Cloud metadata services that sit outside the link-local range (Alibaba, Oracle).
    if ip == Ipv4Addr::new(100, 100, 100, 200) || ip == Ipv4Addr::new(192, 0, 0, 192) {
        return Forbidden;
    }
    match ip.octets() {
        [0, ..] => Forbidden,                              // "this network", includes 0.0.0.0
        [10, ..] | [127, ..] => Local,                     // private, loopback
        [100, 64..=127, ..] => Local,                      // shared address space (CGNAT)
        [169, 254, ..] => Forbidden,                       // link-local, includes 169.254.169.254
        [172, 16..=31, ..] | [192, 168, ..] => Local,      // private
        [192, 0, 0, _] => Forbidden,                       // IETF protocol assignments
        [192, 0, 2, _] => Forbidden,                       // documentation (TEST-NET-1)
        [192, 88, 99, _] => Forbidden,                     // 6to4 relay anycast
        [198, 18..=19, ..] => Forbidden,                   // benchmarking
        [198, 51, 100, _] | [203, 0, 113, _] => Forbidden, // documentation (TEST-NET-2, -3)
        [224..=255, ..] => Forbidden,                      // multicast, reserved, broadcast
        _ => Public,
    }
}

fn ipv6_scope(ip: Ipv6Addr) -> Scope {
    use Scope::{Forbidden, Local, Public};
    let segments = ip.segments();
    let translated = |v4: Ipv4Addr| if ipv4_scope(v4) == Public { Public } else { Forbidden };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return ipv4_scope(v4);
    }
    if ip == Ipv6Addr::LOCALHOST {
        return Local;
    }
    // AWS's IPv6 metadata service, inside the unique-local range.
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Forbidden;
    }
    let [a, b, ..] = segments;
    match a {
        // NAT64 well-known prefix 64:ff9b::/96: an IPv4 address behind a translator.
        0x0064 if b == 0xff9b && segments[2..6] == [0, 0, 0, 0] => translated(v4_at(&segments, 6)),
        // 6to4 2002::/16: an IPv4 address in segments 1 and 2.
        0x2002 => translated(v4_at(&segments, 1)),
        // IETF protocol assignments (Teredo, benchmarking, ORCHID), documentation.
        0x2001 if b < 0x0200 => Forbidden,
        0x2001 if b == 0x0db8 => Forbidden,
        0x3fff if b < 0x1000 => Forbidden,
        // Global unicast 2000::/3.
        0x2000..=0x3fff => Public,
        // Unique local fc00::/7.
        0xfc00..=0xfdff => Local,
        // The unspecified address, IPv4-compatible (deprecated) and the remaining special-purpose
        // ranges, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8, unassigned space.
        _ => Forbidden,
    }
}

fn v4_at(segments: &[u16; 8], index: usize) -> Ipv4Addr {
    let [high, low] = [segments[index], segments[index + 1]];
    Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: EgressPolicy = EgressPolicy { allow_insecure_local: false };
    const LOCAL: EgressPolicy = EgressPolicy { allow_insecure_local: true };

    /// Every row is an address or a name and what it reaches; both policies follow from it: public
    /// is allowed by both, local only with the local setting, forbidden by neither.
    #[test]
    fn egress_table() {
        use Scope::{Forbidden, Local, Public};
        let cases: &[(&str, Scope)] = &[
            // IPv4.
            ("0.0.0.0", Forbidden),
            ("0.1.2.3", Forbidden),
            ("1.1.1.1", Public),
            ("8.8.8.8", Public),
            ("9.255.255.255", Public),
            ("10.0.0.1", Local),
            ("10.255.255.255", Local),
            ("11.0.0.0", Public),
            ("100.63.255.255", Public),
            ("100.64.0.1", Local),
            ("100.127.255.255", Local),
            ("100.128.0.0", Public),
            ("126.255.255.255", Public),
            ("127.0.0.1", Local),
            ("127.255.255.254", Local),
            ("128.0.0.1", Public),
            ("169.253.255.255", Public),
            ("169.254.0.1", Forbidden),
            ("169.255.0.0", Public),
            ("172.15.255.255", Public),
            ("172.16.0.1", Local),
            ("172.31.255.255", Local),
            ("172.32.0.0", Public),
            ("192.0.0.1", Forbidden),
            ("192.0.1.1", Public),
            ("192.0.2.1", Forbidden),
            ("192.88.99.1", Forbidden),
            ("192.167.255.255", Public),
            ("192.168.0.1", Local),
            ("192.168.255.255", Local),
            ("192.169.0.0", Public),
            ("198.17.255.255", Public),
            ("198.18.0.1", Forbidden),
            ("198.19.255.255", Forbidden),
            ("198.20.0.0", Public),
            ("198.51.100.7", Forbidden),
            ("203.0.113.9", Forbidden),
            ("203.0.114.0", Public),
            ("223.255.255.255", Public),
            ("224.0.0.1", Forbidden),
            ("239.255.255.250", Forbidden),
            ("240.0.0.1", Forbidden),
            ("255.255.255.255", Forbidden),
            // Cloud metadata, by address: never, whatever the setting.
            ("169.254.169.254", Forbidden),
            ("169.254.170.2", Forbidden),
            ("100.100.100.200", Forbidden),
            ("192.0.0.192", Forbidden),
            ("fd00:ec2::254", Forbidden),
            // IPv6.
            ("::", Forbidden),
            ("::1", Local),
            ("::2", Forbidden),
            ("100::1", Forbidden),
            ("2001::1", Forbidden),
            ("2001:2::1", Forbidden),
            ("2001:10::1", Forbidden),
            ("2001:1ff:ffff::1", Forbidden),
            ("2001:200::1", Public),
            ("2001:db8::1", Forbidden),
            ("2001:db9::1", Public),
            ("2001:4860:4860::8888", Public),
            ("2606:4700:4700::1111", Public),
            ("2a00:1450::1", Public),
            ("3fff::1", Forbidden),
            ("3fff:fff::1", Forbidden),
            ("3fff:1000::1", Public),
            ("4000::1", Forbidden),
            ("fc00::1", Local),
            ("fd12:3456::1", Local),
            ("fe80::1", Forbidden),
            ("febf::1", Forbidden),
            ("fec0::1", Forbidden),
            ("ff02::1", Forbidden),
            ("ff0e::1", Forbidden),
            // IPv4 inside IPv6: mapped ones are their IPv4 address; IPv4-compatible ones are deprecated;
            // translated ones (NAT64, 6to4) are public or nothing.
            ("::ffff:127.0.0.1", Local),
            ("::ffff:7f00:1", Local),
            ("::ffff:10.1.2.3", Local),
            ("::ffff:192.168.1.1", Local),
            ("::ffff:169.254.169.254", Forbidden),
            ("::ffff:100.100.100.200", Forbidden),
            ("::ffff:0.0.0.0", Forbidden),
            ("::ffff:255.255.255.255", Forbidden),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Forbidden),
            ("::8.8.8.8", Forbidden),
            ("64:ff9b::808:808", Public),
            ("64:ff9b::7f00:1", Forbidden),
            ("64:ff9b::a00:1", Forbidden),
            ("64:ff9b::a9fe:a9fe", Forbidden),
            ("64:ff9b:1::808:808", Forbidden),
            ("2002:808:808::1", Public),
            ("2002:7f00:1::1", Forbidden),
            ("2002:a9fe:a9fe::1", Forbidden),
            ("2002:c0a8:101::1", Forbidden),
            // Names.
            ("api.example.com", Public),
            ("API.Example.COM.", Public),
            ("localhost.example.com", Public),
            ("internal.example.com", Public),
            ("mylocalhost.com", Public),
            ("localhost", Local),
            ("LOCALHOST.", Local),
            ("provider.localhost", Local),
            ("sandbox", Local),
            ("printer.local", Local),
            ("router.home.arpa", Local),
            ("voip.corp", Local),
            ("vm.c.project.internal", Local),
            // Cloud metadata, by name.
            ("metadata", Forbidden),
            ("metadata.google.internal", Forbidden),
            ("Metadata.Google.Internal.", Forbidden),
            ("metadata.goog", Forbidden),
            ("instance-data", Forbidden),
            ("instance-data.ec2.internal", Forbidden),
        ];
        for &(host, scope) in cases {
            let (got, strict, local) = match host.parse::<IpAddr>() {
                Ok(ip) => (address_scope(ip), STRICT.allows(ip), LOCAL.allows(ip)),
                Err(_) => (name_scope(host), STRICT.allows_name(host), LOCAL.allows_name(host)),
            };
            assert_eq!(got, scope, "{host}");
            assert_eq!(strict, scope == Public, "{host} under the default policy");
            assert_eq!(local, scope != Forbidden, "{host} with PROVIDER_ALLOW_INSECURE_LOCAL");
        }
        assert_eq!(EgressPolicy::default(), STRICT);
        assert!(STRICT.allows_scheme(true) && !STRICT.allows_scheme(false));
        assert!(LOCAL.allows_scheme(true) && LOCAL.allows_scheme(false));
    }
}
