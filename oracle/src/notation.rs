//! The compact notation for packet sequences, used in code, in the output and in
//! `DEPARTURES.md`:
//!
//! ```text
//! O S 1000 w=65535 ws=7; R SA 5000/1001; O A 1001/5001 len=100; R R 5001
//! ```
//!
//! Steps are separated by `;`. A TCP step is `DIR FLAGS SEQ[/ACK] [OPTIONS]`:
//! - `DIR` is `O` (the client, 198.18.0.0/16) or `R` (the server, 198.19.0.0/16). These are
//!   endpoint roles, not conntrack directions: a sequence may start with `R`.
//! - `FLAGS` are letters `S` SYN, `F` FIN, `R` RST, `P` PSH, `A` ACK, `U` URG, `E` ECE,
//!   `C` CWR, or `-` for none.
//! - `SEQ/ACK`: the ACK number is written into the header whether or not `A` is set.
//! - Options: `len=N` payload bytes, `w=N` window (default 65535), `ws=N` window scale
//!   option, `mss=N`, `sackok`, `sack=L-R[,L-R]`.
//!
//! UDP steps: `O udp [len=N]`. ICMP steps: `O ping N` (echo request, sequence N) and
//! `R pong N` (echo reply). `+Ns` lets N seconds pass (really, on both sides).

use crate::wire::flags as f;
use std::fmt;

/// Which endpoint sends a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// The client (198.18.0.0/16), written into tun0.
    O,
    /// The server (198.19.0.0/16), written into tun1.
    R,
}

impl Dir {
    /// The other endpoint.
    pub fn other(self) -> Dir {
        match self {
            Dir::O => Dir::R,
            Dir::R => Dir::O,
        }
    }
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dir::O => "O",
            Dir::R => "R",
        })
    }
}

/// Default advertised window.
pub const DEFAULT_WINDOW: u16 = 65535;

/// One TCP segment of a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpStep {
    /// Sender.
    pub dir: Dir,
    /// Flag byte.
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Payload bytes.
    pub len: u32,
    /// Advertised window (unscaled).
    pub window: u16,
    /// Window scale option.
    pub wscale: Option<u8>,
    /// MSS option.
    pub mss: Option<u16>,
    /// SACK-permitted option.
    pub sack_ok: bool,
    /// SACK blocks.
    pub sack: Vec<(u32, u32)>,
}

impl TcpStep {
    /// A segment with no payload and no options.
    pub fn new(dir: Dir, flags: u8, seq: u32, ack: u32) -> TcpStep {
        TcpStep {
            dir,
            flags,
            seq,
            ack,
            len: 0,
            window: DEFAULT_WINDOW,
            wscale: None,
            mss: None,
            sack_ok: false,
            sack: Vec::new(),
        }
    }

    /// Sets the payload length.
    pub fn len(mut self, len: u32) -> TcpStep {
        self.len = len;
        self
    }

    /// Sets the window.
    pub fn win(mut self, window: u16) -> TcpStep {
        self.window = window;
        self
    }

    /// Sets the window scale option.
    pub fn ws(mut self, shift: u8) -> TcpStep {
        self.wscale = Some(shift);
        self
    }
}

/// One step of a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A TCP segment.
    Tcp(TcpStep),
    /// A UDP datagram with `len` bytes of payload.
    Udp {
        /// Sender.
        dir: Dir,
        /// Payload bytes.
        len: u16,
    },
    /// An ICMP echo request (`reply` false) or reply.
    Echo {
        /// Sender.
        dir: Dir,
        /// Echo reply rather than request.
        reply: bool,
        /// Echo sequence number.
        seq: u16,
    },
    /// Let this many seconds pass.
    Wait(u32),
}

impl Step {
    /// The sender, for a packet step.
    pub fn dir(&self) -> Option<Dir> {
        match self {
            Step::Tcp(t) => Some(t.dir),
            Step::Udp { dir, .. } | Step::Echo { dir, .. } => Some(*dir),
            Step::Wait(_) => None,
        }
    }

    /// Which flow of its sequence the packet belongs to: 0 for every TCP and UDP packet and
    /// for the client's echo requests and the server's echo replies; 1 for the server's echo
    /// requests and the client's replies (conntrack keys echo flows by who asks).
    pub fn flow(&self) -> usize {
        match self {
            Step::Echo { dir, reply, .. } => usize::from((*dir == Dir::R) != *reply),
            _ => 0,
        }
    }

    /// The IP protocol number of a packet step (0 for a wait).
    pub fn ip_proto(&self) -> u8 {
        match self {
            Step::Tcp(_) => crate::wire::PROTO_TCP,
            Step::Udp { .. } => crate::wire::PROTO_UDP,
            Step::Echo { .. } => crate::wire::PROTO_ICMP,
            Step::Wait(_) => 0,
        }
    }

    /// The protocol name used in pattern keys.
    pub fn proto(&self) -> &'static str {
        match self {
            Step::Tcp(_) => "tcp",
            Step::Udp { .. } => "udp",
            Step::Echo { .. } => "icmp",
            Step::Wait(_) => "wait",
        }
    }

    /// The flag class used in pattern keys: TCP flags without PSH/ECE/CWR (which conntrack
    /// ignores), `+data` when there is payload; `udp`; `ping`/`pong`.
    pub fn class(&self) -> String {
        match self {
            Step::Tcp(t) => {
                let mut s = flag_string(t.flags & !(f::PSH | f::ECE | f::CWR));
                if t.len > 0 {
                    s.push_str("+data");
                }
                s
            }
            Step::Udp { .. } => "udp".into(),
            Step::Echo { reply: false, .. } => "ping".into(),
            Step::Echo { reply: true, .. } => "pong".into(),
            Step::Wait(_) => "wait".into(),
        }
    }
}

const FLAG_LETTERS: [(u8, char); 8] = [
    (f::SYN, 'S'),
    (f::FIN, 'F'),
    (f::RST, 'R'),
    (f::PSH, 'P'),
    (f::ACK, 'A'),
    (f::URG, 'U'),
    (f::ECE, 'E'),
    (f::CWR, 'C'),
];

/// Flags as letters (`SA`, `FA`, `-` for none).
pub fn flag_string(flags: u8) -> String {
    let s: String = FLAG_LETTERS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, c)| *c)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

impl fmt::Display for TcpStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.dir, flag_string(self.flags), self.seq)?;
        if self.flags & f::ACK != 0 || self.ack != 0 {
            write!(f, "/{}", self.ack)?;
        }
        if self.len != 0 {
            write!(f, " len={}", self.len)?;
        }
        if self.window != DEFAULT_WINDOW {
            write!(f, " w={}", self.window)?;
        }
        if let Some(ws) = self.wscale {
            write!(f, " ws={ws}")?;
        }
        if let Some(mss) = self.mss {
            write!(f, " mss={mss}")?;
        }
        if self.sack_ok {
            f.write_str(" sackok")?;
        }
        if !self.sack.is_empty() {
            let blocks: Vec<String> = self.sack.iter().map(|(l, r)| format!("{l}-{r}")).collect();
            write!(f, " sack={}", blocks.join(","))?;
        }
        Ok(())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Tcp(t) => t.fmt(f),
            Step::Udp { dir, len } => {
                write!(f, "{dir} udp")?;
                if *len != 0 {
                    write!(f, " len={len}")?;
                }
                Ok(())
            }
            Step::Echo { dir, reply, seq } => {
                write!(f, "{dir} {} {seq}", if *reply { "pong" } else { "ping" })
            }
            Step::Wait(s) => write!(f, "+{s}s"),
        }
    }
}

/// A sequence of steps in notation, `; `-separated.
pub fn format_steps(steps: &[Step]) -> String {
    let v: Vec<String> = steps.iter().map(Step::to_string).collect();
    v.join("; ")
}

/// A notation error: which step, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotationError {
    /// The offending step's text.
    pub step: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for NotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad step `{}`: {}", self.step, self.reason)
    }
}

impl std::error::Error for NotationError {}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what} `{s}` is not a number in range"))
}

fn parse_flags(s: &str) -> Result<u8, String> {
    if s == "-" {
        return Ok(0);
    }
    let mut bits = 0;
    for c in s.chars() {
        let (bit, _) = FLAG_LETTERS
            .iter()
            .find(|(_, l)| *l == c)
            .ok_or_else(|| format!("unknown flag letter `{c}`"))?;
        bits |= bit;
    }
    Ok(bits)
}

fn parse_tcp(dir: Dir, words: &[&str]) -> Result<TcpStep, String> {
    let flags = parse_flags(words[0])?;
    let seqack = words.get(1).ok_or("missing SEQ[/ACK]")?;
    let (seq, ack) = match seqack.split_once('/') {
        Some((s, a)) => (num(s, "seq")?, num(a, "ack")?),
        None => (num(seqack, "seq")?, 0),
    };
    let mut t = TcpStep::new(dir, flags, seq, ack);
    for opt in &words[2..] {
        match opt.split_once('=') {
            Some(("len", v)) => t.len = num(v, "len")?,
            Some(("w", v)) => t.window = num(v, "window")?,
            Some(("ws", v)) => t.wscale = Some(num(v, "window scale")?),
            Some(("mss", v)) => t.mss = Some(num(v, "mss")?),
            Some(("sack", v)) => {
                for block in v.split(',') {
                    let (l, r) = block
                        .split_once('-')
                        .ok_or_else(|| format!("SACK block `{block}` is not L-R"))?;
                    t.sack.push((num(l, "SACK edge")?, num(r, "SACK edge")?));
                }
                if t.sack.len() > 4 {
                    return Err("at most 4 SACK blocks".into());
                }
            }
            None if *opt == "sackok" => t.sack_ok = true,
            _ => return Err(format!("unknown option `{opt}`")),
        }
    }
    Ok(t)
}

/// Parses one step.
pub fn parse_step(text: &str) -> Result<Step, NotationError> {
    let err = |reason: String| NotationError {
        step: text.trim().to_string(),
        reason,
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some(first) = words.first() else {
        return Err(err("empty step".into()));
    };
    if let Some(secs) = first.strip_prefix('+').and_then(|s| s.strip_suffix('s')) {
        if words.len() != 1 {
            return Err(err("a wait takes nothing after it".into()));
        }
        return num(secs, "seconds").map(Step::Wait).map_err(err);
    }
    let dir = match *first {
        "O" => Dir::O,
        "R" => Dir::R,
        other => return Err(err(format!("direction `{other}` is neither O nor R"))),
    };
    let rest = &words[1..];
    match rest.first().copied() {
        None => Err(err("missing flags or protocol".into())),
        Some("udp") => {
            let mut len = 0;
            for opt in &rest[1..] {
                match opt.split_once('=') {
                    Some(("len", v)) => len = num(v, "len").map_err(err)?,
                    _ => return Err(err(format!("unknown UDP option `{opt}`"))),
                }
            }
            Ok(Step::Udp { dir, len })
        }
        Some(kind @ ("ping" | "pong")) => {
            let seq = match rest.get(1) {
                Some(s) => num(s, "echo sequence").map_err(err)?,
                None => 0,
            };
            if rest.len() > 2 {
                return Err(err("an echo step takes one sequence number".into()));
            }
            Ok(Step::Echo {
                dir,
                reply: kind == "pong",
                seq,
            })
        }
        Some(_) => parse_tcp(dir, rest).map(Step::Tcp).map_err(err),
    }
}

/// Parses `;`-separated steps.
pub fn parse_steps(text: &str) -> Result<Vec<Step>, NotationError> {
    text.split(';')
        .filter(|s| !s.trim().is_empty())
        .map(parse_step)
        .collect()
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = "O S 1000 ws=7 mss=1460 sackok; R SA 5000/1001 w=1000 ws=15; \
                    O A 1001/5001 len=100; O PA 1101/5001 len=5 sack=1-2,3-4; R R 5001; \
                    O - 0; O udp len=3; R udp; O ping 1; R pong 1; +3s";
        let steps = parse_steps(text).unwrap();
        assert_eq!(steps.len(), 11);
        let again = parse_steps(&format_steps(&steps)).unwrap();
        assert_eq!(steps, again);
        let Step::Tcp(t) = &steps[1] else { panic!() };
        assert_eq!(t.flags, f::SYN | f::ACK);
        assert_eq!(
            (t.seq, t.ack, t.window, t.wscale),
            (5000, 1001, 1000, Some(15))
        );
        assert_eq!(steps[4].to_string(), "R R 5001");
        assert_eq!(steps[3].class(), "A+data");
        assert_eq!(steps[10], Step::Wait(3));
    }

    #[test]
    fn flows_of_echo() {
        let s = parse_steps("O ping 1; R pong 1; R ping 2; O pong 2").unwrap();
        let flows: Vec<usize> = s.iter().map(Step::flow).collect();
        assert_eq!(flows, [0, 0, 1, 1]);
    }

    #[test]
    fn errors() {
        for bad in [
            "X S 1",
            "O Q 1",
            "O S",
            "O S x",
            "O S 1 bogus",
            "O S 1 w=70000",
            "O udp len",
            "+xs",
            "O",
        ] {
            assert!(parse_step(bad).is_err(), "{bad}");
        }
    }
}
