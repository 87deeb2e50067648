//! The test bed: namespace A (clients, with the kernel's conntrack watching) and namespace B
//! (servers), each with a tun device whose other end the forwarder holds.
//!
//! ```text
//!   A: rwa 198.18.1.1 peer 198.18.2.1  <-fd->  forwarder (refwatch)  <-fd->  B: rwb 198.18.2.1 peer 198.18.1.1
//! ```

use crate::error::{failed, Error, Result};
use crate::forwarder::{DSCP_KERNEL_INVALID, DSCP_REFWATCH_INVALID};
use crate::netns::Netns;
use crate::probe::PROBE_PORT;
use crate::tun::Tun;
use std::net::Ipv4Addr;
use std::path::Path;

/// A's address (clients).
pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// B's address (servers).
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// The nftables table loaded in A.
pub const NFT_TABLE: &str = "refwatch_traffic";

/// How the devices are set up.
#[derive(Clone, Copy, Debug)]
pub struct LabConfig {
    /// Device MTU.
    pub mtu: u32,
    /// Limit the TCP stacks to one segment per packet (`gso_max_segs 1` on both devices), so
    /// that A's conntrack sees at its output hook the same segments the forwarder sees.
    pub no_gso: bool,
}

/// Both namespaces and both devices.
#[derive(Debug)]
pub struct Lab {
    /// Namespace A: the clients, the kernel conntrack under comparison.
    pub a: Netns,
    /// Namespace B: the servers.
    pub b: Netns,
    /// A's device.
    pub tun_a: Tun,
    /// B's device.
    pub tun_b: Tun,
    /// `tcp_window_scaling`, `tcp_sack`, `tcp_timestamps` of A and B, one line each.
    pub tcp_options: Vec<String>,
}

/// Says what is missing for the test to run here, if anything.
pub fn check_prerequisites() -> Result<()> {
    let mut missing = Vec::new();
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (CAP_NET_ADMIN to create namespaces and tun devices)".to_string());
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun (the tun driver)".to_string());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        if find_in_path(tool).is_none() {
            missing.push(format!("the `{tool}` command (package {package})"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Unavailable(format!(
            "missing {}",
            missing.join(", ")
        )))
    }
}

fn find_in_path(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The ruleset for A: conntrack on the output and input hooks, counting (never dropping)
/// what it calls invalid, per protocol, and every packet for scale. The output chain marks
/// invalid packets with a DSCP the forwarder reads (the kernel's verdict per packet); the
/// input chain counts the packets the forwarder marked as refwatch-invalid (observe mode).
fn ruleset() -> String {
    let chain = |name: &str, hook: &str, first: &str, extra: &str| {
        format!(
            "  chain {name} {{\n    type filter hook {hook} priority 0; policy accept;\n{first}    \
             counter comment \"{name}-all\"\n    \
             ct state invalid counter comment \"{name}-invalid\"\n    \
             ct state invalid meta l4proto tcp counter comment \"{name}-invalid-tcp\"\n    \
             ct state invalid meta l4proto udp counter comment \"{name}-invalid-udp\"\n{extra}  }}\n"
        )
    };
    let probe = format!(
        "    tcp dport {PROBE_PORT} ct state invalid ip dscp set {DSCP_KERNEL_INVALID} counter comment \"probe-invalid\"\n    \
         tcp dport {PROBE_PORT} accept\n"
    );
    let out = format!("    ct state invalid ip dscp set {DSCP_KERNEL_INVALID}\n");
    let inp = format!(
        "    ip dscp {DSCP_REFWATCH_INVALID} counter comment \"in-refwatch-invalid\"\n    \
         ip dscp {DSCP_REFWATCH_INVALID} ct state invalid counter comment \"in-refwatch-invalid-kernel-invalid\"\n"
    );
    format!(
        "table inet {NFT_TABLE} {{\n{}{}}}\n",
        chain("out", "output", &probe, &out),
        chain("in", "input", "", &inp)
    )
}

/// Creates one side: namespace, device, addresses, IPv6 off (no neighbour discovery noise).
fn side(
    name: &str,
    dev: &str,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    cfg: LabConfig,
) -> Result<(Netns, Tun)> {
    let ns = Netns::create(name).map_err(|e| match e {
        Error::Failed(m) => Error::Unavailable(m),
        other => other,
    })?;
    let dev_name = dev.to_string();
    let tun = ns.run(move || {
        if Path::new("/proc/sys/net/ipv6/conf/default/disable_ipv6").exists() {
            std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
                .map_err(|e| failed(format!("disabling IPv6 for new devices: {e}")))?;
        }
        Tun::create(&dev_name)
    })?;
    ns.command("ip", &["link", "set", "lo", "up"], None)?;
    ns.command(
        "ip",
        &[
            "addr",
            "add",
            &local.to_string(),
            "peer",
            &format!("{peer}/32"),
            "dev",
            dev,
        ],
        None,
    )?;
    let mtu = cfg.mtu.to_string();
    ns.command(
        "ip",
        &[
            "link",
            "set",
            "dev",
            dev,
            "mtu",
            &mtu,
            "txqueuelen",
            "10000",
            "up",
        ],
        None,
    )?;
    if cfg.no_gso {
        ns.command(
            "ip",
            &["link", "set", "dev", dev, "gso_max_segs", "1"],
            None,
        )?;
    }
    Ok((ns, tun))
}

/// Builds the test bed and turns on A's conntrack with strict TCP tracking.
pub fn build(cfg: LabConfig) -> Result<Lab> {
    let (a, tun_a) = side("A", "rwa", A_ADDR, B_ADDR, cfg)?;
    let (b, tun_b) = side("B", "rwb", B_ADDR, A_ADDR, cfg)?;
    a.command("nft", &["-f", "-"], Some(&ruleset()))
        .map_err(|e| Error::Unavailable(format!("loading the nftables ruleset in A: {e}")))?;
    // The conntrack sysctls of a namespace appear once conntrack is in use there.
    for (knob, v) in [
        ("nf_conntrack_tcp_loose", "0"),
        ("nf_conntrack_tcp_be_liberal", "0"),
    ] {
        a.sysctl_set(&format!("/proc/sys/net/netfilter/{knob}"), v)?;
    }
    if a.read("/proc/thread-self/net/nf_conntrack").is_err() {
        return Err(Error::Unavailable(
            "/proc/net/nf_conntrack in namespace A (CONFIG_NF_CONNTRACK_PROCFS)".into(),
        ));
    }
    let mut tcp_options = Vec::new();
    for ns in [&a, &b] {
        let get = |k: &str| -> Result<String> {
            Ok(ns
                .read(&format!("/proc/sys/net/ipv4/tcp_{k}"))?
                .trim()
                .to_string())
        };
        tcp_options.push(format!(
            "{}: tcp_window_scaling={} tcp_sack={} tcp_timestamps={}",
            ns.name(),
            get("window_scaling")?,
            get("sack")?,
            get("timestamps")?
        ));
    }
    Ok(Lab {
        a,
        b,
        tun_a,
        tun_b,
        tcp_options,
    })
}
