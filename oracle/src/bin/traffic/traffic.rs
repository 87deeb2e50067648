//! The traffic: TCP bulk transfers both ways on many concurrent connections from clients in A
//! to a server in B, closed in four ways, plus UDP request/reply flows. Every byte is checked
//! against the seeded stream it was generated from.

use crate::error::{failed, Context, Result};
use crate::lab::{A_ADDR, B_ADDR};
use crate::netns::Netns;
use crate::rng::{Fnv64, Stream};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const TCP_PORT: u16 = 5000;
const UDP_PORT: u16 = 5001;
const MAGIC: u32 = 0x5257_5431; // "RWT1"
const QUIT: u32 = 0x5157_4954; // "QWIT"
const UDP_MAGIC: u32 = 0x5257_5531; // "RWU1"
const HEADER: usize = 20;
const UDP_PAYLOAD: usize = 64;
/// How long a UDP client waits for a reply before sending the request again.
const UDP_RETRY_AFTER: Duration = Duration::from_millis(300);
const UDP_TRIES: u32 = 20;
/// Pace of the long UDP flows, which must outlive the kernel's 2-second "stream" mark.
const UDP_PACE: Duration = Duration::from_millis(100);
const UDP_LONG_MIN: Duration = Duration::from_secs(3);
const UDP_LONG_MAX_EXCHANGES: u32 = 600;

/// What traffic to send.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// TCP connections, all concurrent.
    pub conns: usize,
    /// Bytes each client sends.
    pub request_bytes: usize,
    /// Bytes each server sends back (after an 8-byte hash of what it received).
    pub reply_bytes: usize,
    /// UDP flows (every other one long-lived, the others a quick burst).
    pub udp_flows: usize,
    /// Request/reply exchanges of a short UDP flow.
    pub udp_requests: u32,
    /// Seed of the payloads.
    pub seed: u64,
    /// Bound on every blocking socket call.
    pub timeout: Duration,
}

/// How a TCP connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// The client shuts down its side first (the client ends in TIME_WAIT).
    ClientFirst,
    /// The server shuts down its side first.
    ServerFirst,
    /// The client aborts with a RST (SO_LINGER 0) after receiving everything.
    ClientReset,
    /// The server aborts with a RST after the client confirmed receipt.
    ServerReset,
}

impl Close {
    /// The close of connection `i`: mostly orderly, one in eight reset (alternating ends).
    pub fn of(i: usize) -> Close {
        match i % 8 {
            7 if (i / 8) % 2 == 0 => Close::ClientReset,
            7 => Close::ServerReset,
            k if k % 2 == 0 => Close::ClientFirst,
            _ => Close::ServerFirst,
        }
    }

    fn code(self) -> u8 {
        match self {
            Close::ClientFirst => 0,
            Close::ServerFirst => 1,
            Close::ClientReset => 2,
            Close::ServerReset => 3,
        }
    }

    fn from_code(c: u8) -> Option<Close> {
        [
            Close::ClientFirst,
            Close::ServerFirst,
            Close::ClientReset,
            Close::ServerReset,
        ]
        .into_iter()
        .find(|k| k.code() == c)
    }
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Close::ClientFirst => "client-closes-first",
            Close::ServerFirst => "server-closes-first",
            Close::ClientReset => "client-resets",
            Close::ServerReset => "server-resets",
        })
    }
}

/// One end's result: bytes checked, or what went wrong.
pub type EndResult = std::result::Result<u64, String>;

/// One TCP connection, both ends.
#[derive(Clone, Debug)]
pub struct TcpOutcome {
    /// Connection number.
    pub id: u32,
    /// How it was to close.
    pub close: Close,
    /// The client's port, once connected.
    pub client_port: Option<u16>,
    /// The client's result.
    pub client: EndResult,
    /// The server's result (`None`: the server never saw this connection).
    pub server: Option<EndResult>,
}

impl TcpOutcome {
    /// Both ends finished with their data intact.
    pub fn ok(&self) -> bool {
        self.client.is_ok() && matches!(self.server, Some(Ok(_)))
    }

    /// Bytes checked by both ends.
    pub fn bytes_checked(&self) -> u64 {
        self.client.as_ref().copied().unwrap_or(0)
            + match &self.server {
                Some(Ok(n)) => *n,
                _ => 0,
            }
    }
}

/// One UDP flow.
#[derive(Clone, Debug)]
pub struct UdpOutcome {
    /// Flow number.
    pub id: u32,
    /// Long-lived (spans more than the kernel's 2-second stream mark) or a quick burst.
    pub long: bool,
    /// The client's port.
    pub client_port: Option<u16>,
    /// Exchanges completed.
    pub exchanges: u32,
    /// Requests sent again after no reply came.
    pub retries: u32,
    /// Whether every exchange completed with the reply intact.
    pub result: std::result::Result<(), String>,
}

/// Everything the traffic did.
#[derive(Clone, Debug)]
pub struct TrafficReport {
    /// TCP connections, by id.
    pub tcp: Vec<TcpOutcome>,
    /// UDP flows, by id.
    pub udp: Vec<UdpOutcome>,
    /// Datagrams the UDP server answered.
    pub udp_served: u64,
    /// From the first connect to the last close.
    pub elapsed: Duration,
}

/// What a server handler reports.
struct Served {
    id: Option<u32>,
    peer: SocketAddr,
    result: EndResult,
}

fn timeouts(s: &TcpStream, t: Duration) -> io::Result<()> {
    s.set_read_timeout(Some(t))?;
    s.set_write_timeout(Some(t))
}

/// Makes the next close send a RST (SO_LINGER with a zero timeout).
fn linger_zero(s: &TcpStream) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: passes a pointer to a live `linger` and its exact size; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Label of a stream: connection `id`, direction `up` (client to server) or down.
fn label(id: u32, up: bool) -> u64 {
    (u64::from(id) << 1) | u64::from(up)
}

/// Writes `n` bytes of `stream`, hashing them.
fn send_stream(
    s: &mut TcpStream,
    n: usize,
    stream: &mut Stream,
    hash: &mut Fnv64,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let k = left.min(buf.len());
        stream.fill(&mut buf[..k]);
        hash.update(&buf[..k]);
        s.write_all(&buf[..k])?;
        left -= k;
    }
    Ok(())
}

/// Reads exactly `n` bytes and checks them against `stream`, hashing them.
fn recv_stream(
    s: &mut TcpStream,
    n: usize,
    stream: &mut Stream,
    hash: &mut Fnv64,
) -> std::result::Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut at = 0;
    while at < n {
        let k = (n - at).min(buf.len());
        let got = match s.read(&mut buf[..k]) {
            Ok(0) => return Err(format!("EOF after {at} of {n} bytes")),
            Ok(g) => g,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read after {at} of {n} bytes: {}", describe(&e))),
        };
        stream.fill(&mut want[..got]);
        if let Some(i) = (0..got).find(|&i| buf[i] != want[i]) {
            return Err(format!("data corrupted at byte {}", at + i));
        }
        hash.update(&buf[..got]);
        at += got;
    }
    Ok(())
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("timed out ({e})"),
        _ => e.to_string(),
    }
}

/// Reads until EOF; `Ok(true)` for EOF, `Ok(false)` for a reset, counting stray bytes as an error.
fn read_to_end_or_reset(s: &mut TcpStream) -> std::result::Result<bool, String> {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => return Err(format!("{n} unexpected bytes before EOF")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(false),
            Err(e) => return Err(format!("waiting for EOF: {}", describe(&e))),
        }
    }
}

fn expect_eof(s: &mut TcpStream) -> std::result::Result<(), String> {
    match read_to_end_or_reset(s)? {
        true => Ok(()),
        false => Err("connection reset where an orderly close was expected".into()),
    }
}

/// The client side of connection `id`; returns the bytes it checked.
fn client(plan: Plan, id: u32, port: &Mutex<Option<u16>>) -> EndResult {
    let close = Close::of(id as usize);
    let server = SocketAddr::from((B_ADDR, TCP_PORT));
    let mut s = TcpStream::connect_timeout(&server, plan.timeout)
        .map_err(|e| format!("connect: {}", describe(&e)))?;
    *port.lock().unwrap_or_else(|p| p.into_inner()) = s.local_addr().ok().map(|a| a.port());
    timeouts(&s, plan.timeout).map_err(|e| format!("socket timeouts: {e}"))?;
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(&MAGIC.to_be_bytes());
    header.extend_from_slice(&id.to_be_bytes());
    header.extend_from_slice(&[close.code(), 0, 0, 0]);
    header.extend_from_slice(&(plan.request_bytes as u32).to_be_bytes());
    header.extend_from_slice(&(plan.reply_bytes as u32).to_be_bytes());
    s.write_all(&header)
        .map_err(|e| format!("sending the header: {}", describe(&e)))?;
    let mut sent = Fnv64::default();
    send_stream(
        &mut s,
        plan.request_bytes,
        &mut Stream::new(plan.seed, label(id, true)),
        &mut sent,
    )
    .map_err(|e| format!("sending the request: {}", describe(&e)))?;
    let mut echoed = [0u8; 8];
    s.read_exact(&mut echoed)
        .map_err(|e| format!("reading the server's hash: {}", describe(&e)))?;
    if u64::from_be_bytes(echoed) != sent.value() {
        return Err(format!(
            "the server hashed {:016x}, the client sent {:016x}",
            u64::from_be_bytes(echoed),
            sent.value()
        ));
    }
    recv_stream(
        &mut s,
        plan.reply_bytes,
        &mut Stream::new(plan.seed, label(id, false)),
        &mut Fnv64::default(),
    )
    .map_err(|e| format!("reply: {e}"))?;
    match close {
        Close::ClientFirst => {
            s.shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            expect_eof(&mut s)?;
        }
        Close::ServerFirst => {
            expect_eof(&mut s)?;
            s.shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
        }
        Close::ClientReset => linger_zero(&s).map_err(|e| format!("SO_LINGER: {e}"))?,
        Close::ServerReset => {
            s.write_all(b"D")
                .map_err(|e| format!("sending the receipt: {}", describe(&e)))?;
            if read_to_end_or_reset(&mut s)? {
                return Err("orderly close where the server's reset was expected".into());
            }
        }
    }
    Ok((HEADER + 8 + plan.reply_bytes) as u64)
}

/// The server side of one accepted connection.
fn serve(plan: Plan, mut s: TcpStream, peer: SocketAddr) -> Served {
    let mut id = None;
    let result = (|| -> EndResult {
        timeouts(&s, plan.timeout).map_err(|e| format!("socket timeouts: {e}"))?;
        let mut header = [0u8; HEADER];
        s.read_exact(&mut header)
            .map_err(|e| format!("reading the header: {}", describe(&e)))?;
        let word =
            |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        if word(0) != MAGIC {
            return Err(format!("bad magic {:08x}", word(0)));
        }
        let conn = word(4);
        id = Some(conn);
        let close =
            Close::from_code(header[8]).ok_or_else(|| format!("bad close code {}", header[8]))?;
        let (req, rep) = (word(12) as usize, word(16) as usize);
        let mut got = Fnv64::default();
        recv_stream(
            &mut s,
            req,
            &mut Stream::new(plan.seed, label(conn, true)),
            &mut got,
        )
        .map_err(|e| format!("request: {e}"))?;
        s.write_all(&got.value().to_be_bytes())
            .map_err(|e| format!("sending the hash: {}", describe(&e)))?;
        send_stream(
            &mut s,
            rep,
            &mut Stream::new(plan.seed, label(conn, false)),
            &mut Fnv64::default(),
        )
        .map_err(|e| format!("sending the reply: {}", describe(&e)))?;
        match close {
            Close::ClientFirst => {
                expect_eof(&mut s)?;
                s.shutdown(Shutdown::Write)
                    .map_err(|e| format!("shutdown: {e}"))?;
            }
            Close::ServerFirst => {
                s.shutdown(Shutdown::Write)
                    .map_err(|e| format!("shutdown: {e}"))?;
                expect_eof(&mut s)?;
            }
            Close::ClientReset => {
                if read_to_end_or_reset(&mut s)? {
                    return Err("orderly close where the client's reset was expected".into());
                }
            }
            Close::ServerReset => {
                let mut d = [0u8; 1];
                s.read_exact(&mut d)
                    .map_err(|e| format!("reading the receipt: {}", describe(&e)))?;
                linger_zero(&s).map_err(|e| format!("SO_LINGER: {e}"))?;
            }
        }
        Ok((HEADER + req) as u64)
    })();
    Served { id, peer, result }
}

/// The TCP server in B: accepts until told to stop, one handler thread per connection.
fn tcp_server(plan: Plan, listener: TcpListener, stop: Arc<AtomicBool>) -> Result<Vec<Served>> {
    let mut handlers: Vec<JoinHandle<Served>> = Vec::new();
    loop {
        let (s, peer) = listener.accept().context("accept")?;
        if stop.load(Ordering::Acquire) {
            break;
        }
        handlers.push(
            std::thread::Builder::new()
                .name(format!("serve-{}", peer.port()))
                .spawn(move || serve(plan, s, peer))
                .context("spawning a server thread")?,
        );
    }
    handlers
        .into_iter()
        .map(|h| h.join().map_err(|_| failed("a server thread panicked")))
        .collect()
}

/// The UDP server in B: echoes every request until the quit datagram; returns the count.
fn udp_server(plan: Plan, sock: UdpSocket) -> Result<u64> {
    sock.set_read_timeout(Some(plan.timeout))
        .context("UDP server timeout")?;
    let mut buf = [0u8; 2048];
    let mut served = 0;
    loop {
        let (n, from) = sock.recv_from(&mut buf).context("UDP server receive")?;
        if n >= 4 && buf[..4] == QUIT.to_be_bytes() {
            return Ok(served);
        }
        buf[..4].copy_from_slice(&(!UDP_MAGIC).to_be_bytes());
        sock.send_to(&buf[..n], from).context("UDP server reply")?;
        served += 1;
    }
}

/// Tells the long UDP flows that the TCP traffic is over.
type Done = Arc<AtomicBool>;

/// One UDP flow from A.
fn udp_client(
    plan: Plan,
    id: u32,
    long: bool,
    done: Done,
    out: &Mutex<UdpOutcome>,
) -> std::result::Result<(), String> {
    let sock = UdpSocket::bind((A_ADDR, 0)).map_err(|e| format!("bind: {e}"))?;
    sock.connect((B_ADDR, UDP_PORT))
        .map_err(|e| format!("connect: {e}"))?;
    out.lock().unwrap_or_else(|p| p.into_inner()).client_port =
        sock.local_addr().ok().map(|a| a.port());
    sock.set_read_timeout(Some(UDP_RETRY_AFTER))
        .map_err(|e| format!("timeout: {e}"))?;
    let mut payloads = Stream::new(plan.seed, 0x0075_6470_0000_0000 | u64::from(id));
    let start = Instant::now();
    let mut seq = 0u32;
    loop {
        let mut req = Vec::with_capacity(12 + UDP_PAYLOAD);
        req.extend_from_slice(&UDP_MAGIC.to_be_bytes());
        req.extend_from_slice(&id.to_be_bytes());
        req.extend_from_slice(&seq.to_be_bytes());
        let mut body = [0u8; UDP_PAYLOAD];
        payloads.fill(&mut body);
        req.extend_from_slice(&body);
        let mut answered = false;
        for _ in 0..UDP_TRIES {
            sock.send(&req).map_err(|e| format!("send #{seq}: {e}"))?;
            let mut buf = [0u8; 2048];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n)
                        if n == req.len()
                            && buf[..4] == (!UDP_MAGIC).to_be_bytes()
                            && buf[4..12] == req[4..12] =>
                    {
                        if buf[12..n] != req[12..] {
                            return Err(format!("reply #{seq} corrupted"));
                        }
                        answered = true;
                        break;
                    }
                    Ok(_) => continue, // a late reply to an earlier try
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) => return Err(format!("receive #{seq}: {e}")),
                }
            }
            if answered {
                break;
            }
            out.lock().unwrap_or_else(|p| p.into_inner()).retries += 1;
        }
        if !answered {
            return Err(format!("no reply to #{seq} after {UDP_TRIES} tries"));
        }
        seq += 1;
        out.lock().unwrap_or_else(|p| p.into_inner()).exchanges = seq;
        if !long {
            if seq >= plan.udp_requests {
                return Ok(());
            }
            continue;
        }
        if seq >= UDP_LONG_MAX_EXCHANGES {
            return Ok(());
        }
        // Pace the long flow: listen for stray late replies for one pace interval.
        sock.set_read_timeout(Some(UDP_PACE))
            .map_err(|e| format!("timeout: {e}"))?;
        let mut buf = [0u8; 2048];
        while sock.recv(&mut buf).is_ok() {}
        sock.set_read_timeout(Some(UDP_RETRY_AFTER))
            .map_err(|e| format!("timeout: {e}"))?;
        if done.load(Ordering::Acquire) && start.elapsed() >= UDP_LONG_MIN {
            return Ok(());
        }
    }
}

/// Runs all the traffic: clients in `a`, servers in `b`; returns when every socket is closed.
pub fn run(a: &Netns, b: &Netns, plan: Plan) -> Result<TrafficReport> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    let tx = ready_tx.clone();
    let st = Arc::clone(&stop);
    let tcp_srv = b.spawn("tcp-server".into(), move || {
        let bound = TcpListener::bind((B_ADDR, TCP_PORT)).context("binding the TCP server");
        let listener = match bound {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = tx.send(Err(failed(e.to_string())));
                return Err(e);
            }
        };
        tcp_server(plan, listener, st)
    })?;
    let tx = ready_tx;
    let udp_srv = b.spawn("udp-server".into(), move || {
        let bound = UdpSocket::bind((B_ADDR, UDP_PORT)).context("binding the UDP server");
        let sock = match bound {
            Ok(s) => {
                let _ = tx.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = tx.send(Err(failed(e.to_string())));
                return Err(e);
            }
        };
        udp_server(plan, sock)
    })?;
    for _ in 0..2 {
        ready_rx
            .recv()
            .map_err(|_| failed("a server thread ended before listening"))??;
    }

    let start = Instant::now();
    let done: Done = Arc::new(AtomicBool::new(false));
    let mut udp = Vec::new();
    for id in 0..plan.udp_flows as u32 {
        let long = id % 2 == 1;
        let out = Arc::new(Mutex::new(UdpOutcome {
            id,
            long,
            client_port: None,
            exchanges: 0,
            retries: 0,
            result: Ok(()),
        }));
        let (o, d) = (Arc::clone(&out), Arc::clone(&done));
        let h = a.spawn(format!("udp-{id}"), move || {
            let r = udp_client(plan, id, long, d, &o);
            o.lock().unwrap_or_else(|p| p.into_inner()).result = r;
            Ok(())
        })?;
        udp.push((out, h));
    }
    let mut tcp = Vec::new();
    for id in 0..plan.conns as u32 {
        let port = Arc::new(Mutex::new(None));
        let p = Arc::clone(&port);
        let h = a.spawn(format!("tcp-{id}"), move || Ok(client(plan, id, &p)))?;
        tcp.push((id, port, h));
    }
    let mut outcomes = Vec::new();
    for (id, port, h) in tcp {
        let client = match h.join() {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("client thread panicked".into()),
        };
        outcomes.push(TcpOutcome {
            id,
            close: Close::of(id as usize),
            client_port: *port.lock().unwrap_or_else(|p| p.into_inner()),
            client,
            server: None,
        });
    }
    done.store(true, Ordering::Release);
    let mut udp_outcomes = Vec::new();
    for (out, h) in udp {
        if let Ok(Err(e)) = h.join() {
            out.lock().unwrap_or_else(|p| p.into_inner()).result = Err(e.to_string());
        }
        udp_outcomes.push(out.lock().unwrap_or_else(|p| p.into_inner()).clone());
    }

    // Stop the servers from inside B (over B's loopback, not through the forwarder).
    stop.store(true, Ordering::Release);
    b.run(|| {
        let _ = TcpStream::connect_timeout(&SocketAddr::from((B_ADDR, TCP_PORT)), plan.timeout);
        let s = UdpSocket::bind((B_ADDR, 0)).context("binding the quit socket")?;
        s.send_to(&QUIT.to_be_bytes(), (B_ADDR, UDP_PORT))
            .context("sending quit")?;
        Ok(())
    })?;
    let served = tcp_srv
        .join()
        .map_err(|_| failed("the TCP server thread panicked"))??;
    let udp_served = udp_srv
        .join()
        .map_err(|_| failed("the UDP server thread panicked"))??;
    let elapsed = start.elapsed();
    for s in served {
        let by_id = s.id.and_then(|i| outcomes.iter_mut().find(|o| o.id == i));
        let slot = match by_id {
            Some(o) => o,
            None => match outcomes
                .iter_mut()
                .find(|o| o.client_port == Some(s.peer.port()))
            {
                Some(o) => o,
                None => continue,
            },
        };
        slot.server = Some(s.result);
    }
    Ok(TrafficReport {
        tcp: outcomes,
        udp: udp_outcomes,
        udp_served,
        elapsed,
    })
}
