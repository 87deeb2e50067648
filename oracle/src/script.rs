//! The scripted sequences: every TCP transition the harness knows to ask about, plus UDP and
//! ICMP echo exchanges. Each is a name and a line of [notation](crate::notation).
//!
//! Client ISN 1000, server ISN 5000 unless a script says otherwise.

use crate::notation::{parse_steps, NotationError, Step};

/// One scripted sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Short name, shown in examples.
    pub name: String,
    /// The steps.
    pub steps: Vec<Step>,
}

/// The three-way handshake every connected script starts with.
pub const HS: &str = "O S 1000; R SA 5000/1001; O A 1001/5001";

/// A TCP state the scripts can reach, with the steps that reach it and the next sequence
/// numbers of the client and the server there.
struct Reach {
    state: &'static str,
    steps: String,
    o_nxt: u32,
    r_nxt: u32,
}

fn reaches() -> Vec<Reach> {
    let r = |state, steps: &str, o_nxt, r_nxt| Reach {
        state,
        steps: steps.to_string(),
        o_nxt,
        r_nxt,
    };
    vec![
        r("syn-sent", "O S 1000", 1001, 0),
        r("syn-sent2", "O S 1000; R S 5000", 1001, 5001),
        r("syn-recv", "O S 1000; R SA 5000/1001", 1001, 5001),
        r("established", HS, 1001, 5001),
        r("fin-wait", &format!("{HS}; O FA 1001/5001"), 1002, 5001),
        r(
            "close-wait",
            &format!("{HS}; O FA 1001/5001; R A 5001/1002"),
            1002,
            5001,
        ),
        r(
            "last-ack",
            &format!("{HS}; O FA 1001/5001; R A 5001/1002; R FA 5001/1002"),
            1002,
            5002,
        ),
        r(
            "time-wait",
            &format!("{HS}; O FA 1001/5001; R A 5001/1002; R FA 5001/1002; O A 1002/5002"),
            1002,
            5002,
        ),
        r("close", &format!("{HS}; R R 5001"), 1001, 5001),
    ]
}

/// Flag combinations Linux's `tcp_valid_flags` refuses (PSH, ECE, CWR aside), and a few it
/// takes, tried as the first packet and in every state.
const ODD_FLAGS: [&str; 12] = [
    "SF", "F", "FR", "-", "P", "SR", "U", "SFA", "FRA", "SRA", "SU", "FAU",
];

/// Hand-written sequences: (name, notation).
fn fixed() -> Vec<(String, String)> {
    let hs = HS;
    let est = |rest: &str| format!("{hs}; {rest}");
    let v: Vec<(&str, String)> = vec![
        // Handshakes.
        ("handshake", hs.to_string()),
        (
            "handshake-options",
            "O S 1000 ws=7 mss=1460 sackok; R SA 5000/1001 ws=7 mss=1460 sackok; O A 1001/5001"
                .into(),
        ),
        ("handshake-ack-with-data", "O S 1000; R SA 5000/1001; O PA 1001/5001 len=50".into()),
        ("synack-bad-ack", "O S 1000; R SA 5000/1002; R SA 5000/1001; O A 1001/5001".into()),
        ("synack-no-ack-flag", "O S 1000; R S 5000/1001; O A 1001/5001".into()),
        ("ack-before-synack", "O S 1000; O A 1001/5001; R SA 5000/1001".into()),
        ("data-before-synack", "O S 1000; O PA 1001/0 len=10".into()),
        ("final-ack-wrong", "O S 1000; R SA 5000/1001; O A 1001/5002; O A 1001/5001".into()),
        ("syn-with-data", "O S 1000 len=20; R SA 5000/1021; O A 1021/5001".into()),
        ("syn-urg", "O SU 1000; R SA 5000/1001; O A 1001/5001".into()),
        ("syn-ece-cwr", "O SEC 1000; R SAE 5000/1001; O A 1001/5001".into()),
        // Data.
        (
            "data-both-ways",
            est("O PA 1001/5001 len=100; R A 5001/1101; R PA 5001/1101 len=200; O A 1101/5201"),
        ),
        ("data-unacked", est("O PA 1001/5001 len=100; O PA 1101/5001 len=100")),
        (
            "data-out-of-order",
            est("O PA 1101/5001 len=100; O PA 1001/5001 len=100; R A 5001/1201"),
        ),
        ("data-partly-acked", est("O PA 1001/5001 len=100; R A 5001/1051; O PA 1051/5001 len=100")),
        // Closes.
        (
            "close-originator-first",
            est("O FA 1001/5001; R A 5001/1002; R FA 5001/1002; O A 1002/5002"),
        ),
        (
            "close-responder-first",
            est("R FA 5001/1001; O A 1001/5002; O FA 1001/5002; R A 5002/1002"),
        ),
        (
            "close-simultaneous",
            est("O FA 1001/5001; R FA 5001/1001; O A 1002/5002; R A 5002/1002"),
        ),
        ("close-piggybacked", est("O FA 1001/5001; R FA 5001/1002; O A 1002/5002")),
        (
            "close-with-data",
            est("O FPA 1001/5001 len=10; R PA 5001/1012 len=5; R FA 5006/1012; O A 1012/5007"),
        ),
        ("fin-then-data-from-peer", est("O FA 1001/5001; R A 5001/1002; R PA 5001/1002 len=30; O A 1002/5031")),
        ("data-after-own-fin", est("O FA 1001/5001; O PA 1002/5001 len=10")),
        // Simultaneous open.
        (
            "simultaneous-open",
            "O S 1000; R S 5000; O SA 1000/5001; R SA 5000/1001; O A 1001/5001; R A 5001/1001"
                .into(),
        ),
        (
            "simultaneous-open-reply-first",
            "O S 1000; R S 5000; R SA 5000/1001; O SA 1000/5001; R A 5001/1001".into(),
        ),
        ("simultaneous-open-acks", "O S 1000; R S 5000; O A 1001/5001; R A 5001/1001".into()),
        // New SYN with another ISN.
        (
            "syn-new-isn",
            "O S 1000; O S 3000; R SA 5000/3001; O A 3001/5001".into(),
        ),
        (
            "syn-new-isn-synack-for-old",
            "O S 1000; O S 3000; R SA 5000/1001; O A 1001/5001".into(),
        ),
        ("syn-new-isn-in-syn-recv", "O S 1000; R SA 5000/1001; O S 3000; R SA 6000/3001".into()),
        ("syn-in-established", est("O S 3000; R SA 7000/3001")),
        ("syn-same-isn-in-established", est("O S 1000")),
        ("synack-from-client-in-established", est("O SA 1000/5001")),
        // Retransmissions.
        ("retrans-syn", "O S 1000; O S 1000; R SA 5000/1001; O A 1001/5001".into()),
        ("retrans-synack", "O S 1000; R SA 5000/1001; R SA 5000/1001; O A 1001/5001".into()),
        ("retrans-synack-established", est("R SA 5000/1001; O A 1001/5001")),
        (
            "retrans-data",
            est("O PA 1001/5001 len=100; O PA 1001/5001 len=100; R A 5001/1101; O PA 1001/5001 len=100"),
        ),
        (
            "retrans-data-many",
            est("O PA 1001/5001 len=10; O PA 1001/5001 len=10; O PA 1001/5001 len=10; O PA 1001/5001 len=10; O PA 1001/5001 len=10; R A 5001/1011"),
        ),
        ("retrans-fin", est("O FA 1001/5001; O FA 1001/5001; R A 5001/1002; O FA 1001/5001")),
        (
            "retrans-last-ack",
            est("O FA 1001/5001; R FA 5001/1002; O A 1002/5002; O A 1002/5002; R FA 5001/1002; O A 1002/5002"),
        ),
        // Port reuse.
        (
            "reuse-after-time-wait",
            est("O FA 1001/5001; R FA 5001/1002; O A 1002/5002; O S 200000; R SA 90000/200001; O A 200001/90001"),
        ),
        (
            "reuse-after-time-wait-same-isn",
            est("O FA 1001/5001; R FA 5001/1002; O A 1002/5002; O S 1000; R SA 5000/1001"),
        ),
        (
            "reuse-after-rst-from-client",
            est("O R 1001; O S 2000; R SA 9000/2001; O A 2001/9001"),
        ),
        (
            "reuse-after-rst-from-server",
            est("R R 5001; O S 2000; R SA 9000/2001; O A 2001/9001"),
        ),
        (
            "reuse-by-server-after-time-wait",
            est("O FA 1001/5001; R FA 5001/1002; O A 1002/5002; R S 70000; O SA 80000/70001; R A 70001/80001"),
        ),
        ("reuse-by-server-after-rst", est("O R 1001; R S 70000; O SA 80000/70001")),
        ("syn-after-refused", "O S 1000; R RA 0/1001; O S 1000; R SA 5000/1001; O A 1001/5001".into()),
        // Window scaling.
        (
            "wscale-0",
            "O S 1000 ws=0 w=1000; R SA 5000/1001 ws=0 w=1000; O A 1001/5001 w=1000; O PA 1001/5001 len=1000; O PA 2001/5001 len=1; O PA 2002/5001 len=1"
                .into(),
        ),
        (
            "wscale-14",
            "O S 1000 ws=14; R SA 5000/1001 ws=14; O A 1001/5001 w=1; R A 5001/1001 w=1; O PA 1001/5001 len=1000; R PA 5001/1001 len=1000; O PA 17385/5001 len=1; O PA 17386/5001 len=1"
                .into(),
        ),
        (
            "wscale-15-clamped",
            "O S 1000 ws=15; R SA 5000/1001 ws=15; O A 1001/5001 w=1; R A 5001/1001 w=1; O PA 17385/5001 len=1; O PA 17386/5001 len=1"
                .into(),
        ),
        (
            "wscale-only-client",
            "O S 1000 ws=7; R SA 5000/1001 w=1000; R A 5001/1001 w=1000; O A 1001/5001; O PA 1001/5001 len=1000; O PA 2001/5001 len=1; O PA 2002/5001 len=1"
                .into(),
        ),
        (
            "wscale-only-server",
            "O S 1000 w=1000; R SA 5000/1001 ws=7 w=1000; O A 1001/5001 w=1000; R PA 5001/1001 len=1000; R PA 6001/1001 len=1; R PA 6002/1001 len=1"
                .into(),
        ),
        (
            "window-edge",
            "O S 1000; R SA 5000/1001 w=500; O A 1001/5001; R A 5001/1001 w=500; O PA 1001/5001 len=500; O PA 1501/5001 len=1; O PA 1502/5001 len=1"
                .into(),
        ),
        (
            "window-edge-scaled",
            "O S 1000 ws=2; R SA 5000/1001 ws=2; O A 1001/5001; R A 5001/1001 w=100; O PA 1001/5001 len=400; O PA 1401/5001 len=1; O PA 1402/5001 len=1"
                .into(),
        ),
        (
            "data-partly-in-window",
            "O S 1000; R SA 5000/1001 w=500; O A 1001/5001; R A 5001/1001 w=500; O PA 1201/5001 len=1000; O PA 1600/5001 len=100"
                .into(),
        ),
        // Zero windows.
        (
            "zero-window",
            est("R A 5001/1001 w=0; O PA 1001/5001 len=1; R A 5001/1001 w=0; R A 5001/1001 w=1000; O PA 1001/5001 len=100"),
        ),
        ("zero-window-synack", "O S 1000; R SA 5000/1001 w=0; O A 1001/5001; O PA 1001/5001 len=1".into()),
        ("zero-window-syn", "O S 1000 w=0; R SA 5000/1001; O A 1001/5001; R PA 5001/1001 len=1".into()),
        // SACK.
        (
            "sack-blocks",
            "O S 1000 sackok; R SA 5000/1001 sackok; O A 1001/5001; O PA 1001/5001 len=100; O PA 1201/5001 len=100; R A 5001/1101 sack=1201-1301; O PA 1101/5001 len=100; R A 5001/1301"
                .into(),
        ),
        (
            "sack-beyond-sent",
            "O S 1000 sackok; R SA 5000/1001 sackok; O A 1001/5001; O PA 1001/5001 len=100; R A 5001/1101 sack=90000-90100"
                .into(),
        ),
        // ACKs far away.
        ("ack-far-below", est("O A 1001/1")),
        ("ack-below", est("R PA 5001/1001 len=100; O A 1001/5001; O A 1001/4900")),
        ("ack-above", est("O A 1001/5100")),
        ("ack-far-above", est("O A 1001/900000; R A 5001/900000")),
        ("ack-of-unsent-fin", est("O A 1001/5002")),
        ("seq-far-ahead", est("O PA 900000/5001 len=10")),
        ("seq-far-behind", est("O PA 10/5001 len=10")),
        ("seq-just-behind", est("O PA 1001/5001 len=100; R A 5001/1101; O PA 1000/5001 len=1")),
        // Loose pick-up (off): mid-stream first packets.
        ("midstream-ack", "O A 1001/5001; R A 5001/1001".into()),
        ("midstream-synack", "R SA 5000/1001; O A 1001/5001".into()),
        ("first-from-server", "R S 5000; O SA 1000/5001; R A 5001/1001".into()),
        // Pick-ups that continue (all invalid with loose=0; `--loose` checks the pick-up path).
        (
            "pickup-both-ways",
            "O PA 1001/5001 len=100; R A 5001/1101; O PA 1101/5001 len=50; R A 5001/1151".into(),
        ),
        ("pickup-server-answers-data", "O A 5001/1001; R PA 1001/5001 len=10; O A 5001/1011".into()),
        (
            "pickup-then-close",
            "O A 1001/5001; R A 5001/1001; O FA 1001/5001; R FA 5001/1002; O A 1002/5002".into(),
        ),
        ("pickup-then-rst", "O A 1001/5001; R A 5001/1001; R R 5001".into()),
        ("pickup-then-far-data", "O A 1001/5001; R A 5001/1001; O PA 900001001/5001 len=10".into()),
        ("pickup-zero-window", "O A 1001/5001 w=0; R A 5001/1001; O PA 1001/5001 len=10".into()),
        ("pickup-then-syn", "O A 1001/5001; R A 5001/1001; O S 7000".into()),
        ("pickup-unanswered-repeats", "O A 1001/5001; O A 1001/5001; O A 1001/5001; O A 1001/5001".into()),
        // UDP.
        ("udp-request-reply", "O udp len=10; R udp len=20; O udp".into()),
        ("udp-repeats", "O udp; O udp; R udp; R udp".into()),
        ("udp-server-first", "R udp; O udp".into()),
        ("udp-stream-after-2s", "O udp; R udp; +3s; O udp; R udp".into()),
        ("udp-unreplied-after-2s", "O udp; +3s; O udp".into()),
        // ICMP echo.
        ("icmp-echo", "O ping 1; R pong 1; O ping 2; R pong 2".into()),
        ("icmp-reply-without-request", "R pong 1; O ping 1".into()),
        ("icmp-both-ping", "O ping 1; R ping 1; R pong 1; O pong 1".into()),
        ("icmp-duplicate-reply", "O ping 1; R pong 1; R pong 1".into()),
        ("icmp-client-sends-reply", "O ping 1; O pong 1".into()),
        ("icmp-after-2s", "O ping 1; R pong 1; +3s; O ping 2; R pong 2".into()),
    ];
    v.into_iter().map(|(n, s)| (n.to_string(), s)).collect()
}

/// Generated families: RSTs, odd flags and duplicates in every state.
fn per_state() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for flags in ODD_FLAGS {
        out.push((format!("first-{flags}"), format!("O {flags} 1000/0")));
    }
    for r in reaches() {
        let s = &r.steps;
        for (dir, nxt, peer) in [("O", r.o_nxt, r.r_nxt), ("R", r.r_nxt, r.o_nxt)] {
            let name = |what: &str| format!("{}-{}-{dir}", what, r.state);
            out.push((name("rst-exact"), format!("{s}; {dir} R {nxt}")));
            out.push((name("rst-ack"), format!("{s}; {dir} RA {nxt}/{peer}")));
            out.push((
                name("rst-inexact"),
                format!("{s}; {dir} R {}", nxt.wrapping_add(100)),
            ));
            out.push((
                name("rst-out-of-window"),
                format!("{s}; {dir} R {}", nxt.wrapping_add(100_000_000)),
            ));
            out.push((name("data"), format!("{s}; {dir} PA {nxt}/{peer} len=10")));
            out.push((name("ack"), format!("{s}; {dir} A {nxt}/{peer}")));
            out.push((name("fin"), format!("{s}; {dir} FA {nxt}/{peer}")));
            for flags in ODD_FLAGS {
                out.push((
                    format!("flags-{flags}-{}-{dir}", r.state),
                    format!("{s}; {dir} {flags} {nxt}/{peer}"),
                ));
            }
        }
        // The state's last packet again, then a plausible next one.
        if let Some(last) = s.rsplit(';').next() {
            out.push((
                format!("dup-last-{}", r.state),
                format!("{s}; {}", last.trim()),
            ));
        }
        out.push((
            format!("syn-new-isn-{}", r.state),
            format!("{s}; O S 300000"),
        ));
        out.push((
            format!("syn-same-isn-{}", r.state),
            format!("{s}; O S 1000"),
        ));
        out.push((
            format!("server-syn-{}", r.state),
            format!("{s}; R S 700000"),
        ));
    }
    out.push((
        "rst-answering-syn".into(),
        "O S 1000; R RA 0/1001; O S 1000".into(),
    ));
    out.push((
        "rst-answering-syn-bad-ack".into(),
        "O S 1000; R RA 0/1002".into(),
    ));
    out
}

/// Every scripted sequence, parsed.
pub fn scripts() -> Result<Vec<Script>, NotationError> {
    fixed()
        .into_iter()
        .chain(per_state())
        .map(|(name, text)| {
            Ok(Script {
                name,
                steps: parse_steps(&text)?,
            })
        })
        .collect()
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn all_parse_with_unique_names() {
        let s = scripts().unwrap();
        assert!(s.len() > 300, "{}", s.len());
        let names: HashSet<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), s.len(), "duplicate script names");
        assert!(s.iter().all(|s| !s.steps.is_empty()));
    }
}
