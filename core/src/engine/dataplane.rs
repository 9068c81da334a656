//! The data plane: tun → WireGuard → path, path → WireGuard → tun, and WireGuard's timers.
//! Each loop owns its buffers; nothing is allocated per packet. The direct path moves bursts:
//! one tun wakeup sends its packets in segmented runs, one socket read brings back a coalesced
//! run (UDP GSO/GRO, see `gso`).

mod batch;
mod demux;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod gso;
mod tun_out;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};

use super::table::PeerTable;
use super::Shared;
use crate::clock::Instant;
use crate::conn::plane::PlaneEvent;
use crate::events::Event;
use crate::filter::{DropReason, Header, RuleSet, Tracked, Verdict};
use crate::keys::PublicKey;
use crate::net::packet_addrs;
use crate::path::{Authenticated, Inbound, PathId};
use crate::wg::{AttachedPath, DirectPath, Peer, PACKET_BUFFER};

/// boringtun asks for `update_timers` every 250 ms to 1 s while a peer is active; 250 ms keeps
/// handshake retries and keepalives on time while traffic flows.
const BUSY_TICK: Duration = Duration::from_millis(250);
/// When no peer moved data for a while, boringtun's timers have nothing urgent: a session
/// expires after 180 s and is cleared after 540 s, give or take a tick. The timer task sleeps
/// this long (or until a persistent keepalive is due), and the first packet wakes it (DESIGN 9,
/// idle figure; DESIGN 10: computed, not polled).
const QUIET_TICK: Duration = Duration::from_secs(10);
/// A peer that moved data within this long, or is handshaking, counts as busy: WireGuard's
/// keepalive timeout (10 s), after which boringtun's own timers have nothing urgent to do.
const BUSY_WINDOW: Duration = Duration::from_secs(10);
/// boringtun's shared rate limiter counts handshakes per second and must be reset each second.
const RATE_LIMIT_RESET_EVERY: Duration = Duration::from_secs(1);
/// WireGuard's handshake initiation message type.
const HANDSHAKE_INITIATION: u8 = 1;
/// WireGuard's cookie reply message type: sent unauthenticated, so it proves nothing about the
/// path it came from.
const COOKIE_REPLY_TYPE: u8 = 3;
/// WireGuard's cookie reply message: 64 bytes.
const COOKIE_REPLY_LEN: usize = 64;
/// Tun packets read per wakeup before the run goes out: the kernel's UDP_MAX_SEGMENTS, so a
/// burst of full-size packets fills at most one segmented send.
const TUN_BURST: usize = gso::MAX_SEGMENTS;

use batch::SendBatch;
use demux::Datagram;
use tun_out::{Rx, TunOut, RX_BUFFER_BYTES};

/// Bytes of packet buffers the four loops own for the engine's lifetime (see `budget`): the tun
/// loop's frame (an offloading tun's super-packet), segment and output buffers and its send
/// batch; the UDP loop's coalesced-receive buffer and its `Rx`; the inbound loop's `Rx`; the
/// timer loop's output buffer.
pub(super) const LOOP_BUFFER_BYTES: usize = crate::tun::MAX_FRAME
    + 2 * PACKET_BUFFER
    + gso::MAX_SEND_BYTES
    + gso::MAX_RECV_BYTES
    + RX_BUFFER_BYTES
    + RX_BUFFER_BYTES
    + PACKET_BUFFER;

/// At most one debug line per peer per second for filtered packets: a scan or a flood must
/// not flood the log.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Where a datagram came from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The engine's own UDP socket.
    Direct(SocketAddr),
    /// A path that knows its peer.
    Path { peer: PublicKey, path: PathId },
}

pub(super) async fn tun_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    // A frame may be an offloading tun's TCP super-packet; its segments are cut into `segment`.
    let mut frame_buf = vec![0u8; crate::tun::MAX_FRAME];
    let mut segment = vec![0u8; PACKET_BUFFER];
    let mut out = vec![0u8; PACKET_BUFFER];
    let mut batch = SendBatch::new();
    let mut tun_changed = shared.tun_changed.subscribe();
    // Set while the current tun is closed or broken: wait for a new one instead of spinning.
    let mut tun_dead = false;
    loop {
        let tun = shared.tun.load_full();
        let mut read = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = tun_changed.changed() => {
                tun_dead = false;
                continue;
            }
            r = tun.recv_frame(&mut frame_buf), if !tun_dead => r,
        };
        // This wakeup's frame, then those already queued behind it, up to a burst.
        let mut burst = 1;
        loop {
            match read {
                Ok(0) => {
                    tracing::info!("tun closed by the other side; waiting for a new one");
                    tun_dead = true;
                    break;
                }
                Ok(n) => {
                    let frame = frame_buf.get_mut(..n).unwrap_or_default();
                    let sent = tun.framing().split(frame, &mut segment, |packet| {
                        shared.send_to_peer(packet, &mut out, &mut batch)
                    });
                    if let Err(e) = sent {
                        tracing::trace!(error = %e, "tun frame dropped");
                        shared.counters.tun_garbage(1);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "tun read failed; waiting for a new one");
                    tun_dead = true;
                    break;
                }
            }
            if burst == TUN_BURST {
                break;
            }
            burst += 1;
            read = tun.try_recv_frame(&mut frame_buf);
        }
        batch.flush(&shared.udp, Instant::now());
    }
}

pub(super) async fn udp_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let fd = shared.udp.as_raw_fd();
    if let Err(e) = gso::enable_gro(fd) {
        tracing::debug!(error = %e, "UDP receive offload unavailable; one datagram per read");
    }
    let mut datagrams = vec![0u8; gso::MAX_RECV_BYTES];
    let mut out = Rx::new();
    loop {
        let received = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            r = shared.udp.async_io(Interest::READABLE, || gso::recv(fd, &mut datagrams)) => r,
        };
        match received {
            Ok(r) => {
                let Some(all) = datagrams.get(..r.len) else {
                    continue;
                };
                let source = Source::Direct(r.from);
                match r.segment {
                    // Coalesced by the kernel: equal segments from one sender, the last may be
                    // shorter.
                    Some(segment) => {
                        for d in all.chunks(segment) {
                            shared.receive(d, source, &mut out);
                        }
                    }
                    None => shared.receive(all, source, &mut out),
                }
                shared.flush_tun(&mut out.tun);
            }
            // ICMP errors from earlier sends surface here on Linux; they are not fatal.
            Err(e) => tracing::trace!(error = %e, "udp receive error"),
        }
    }
}

pub(super) async fn inbound_loop(
    shared: Arc<Shared>,
    mut inbound: mpsc::Receiver<Inbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut out = Rx::new();
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            m = inbound.recv() => m,
        };
        let Some(m) = next else { return };
        shared.receive(
            &m.datagram,
            Source::Path {
                peer: m.peer,
                path: m.path,
            },
            &mut out,
        );
        if inbound.is_empty() {
            shared.flush_tun(&mut out.tun);
        }
    }
}

pub(super) async fn timer_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut out = vec![0u8; PACKET_BUFFER];
    let mut wait = BUSY_TICK;
    let mut last_reset = Instant::now();
    // Per peer: its data packet count when last seen, and when it last changed.
    let mut data: std::collections::HashMap<PublicKey, (u64, Instant)> = Default::default();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = shared.timer_wake.notified() => {}
        }
        let now = Instant::now();
        if now - last_reset >= RATE_LIMIT_RESET_EVERY {
            shared.rate_limiter.reset_count();
            last_reset = now;
        }
        let table = shared.table.load();
        data.retain(|k, _| table.by_key.contains_key(k));
        let mut busy = false;
        let mut next = now + QUIET_TICK;
        for peer in table.by_key.values() {
            let c = peer.counters.snapshot();
            let count = c.tx_packets + c.rx_packets;
            let seen = data.entry(peer.key).or_insert((count, now));
            if seen.0 != count {
                *seen = (count, now);
            }
            let last_tx = peer
                .paths()
                .iter()
                .filter_map(|p| p.stats.snapshot().last_tx)
                .max();
            let mut tunn = peer.tunn.lock();
            // Sending without a session: a handshake is under way, and boringtun retries it.
            let handshaking =
                tunn.time_since_last_handshake().is_none() && last_tx.is_some_and(|t| now - t < BUSY_WINDOW);
            let peer_busy = now - seen.1 < BUSY_WINDOW || handshaking;
            if !peer_busy {
                peer.quiet.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            busy |= peer_busy;
            let result = tunn.update_timers(&mut out);
            shared.note_handshake(peer, &tunn, now);
            drop(tunn);
            match result {
                TunnResult::WriteToNetwork(d) => shared.transmit(peer, d, now),
                TunnResult::Err(e) => tracing::trace!(peer = %peer.key, error = ?e, "timer"),
                TunnResult::Done | TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
            }
            if let Some(every) = peer.config.persistent_keepalive {
                // boringtun sends it when this much has passed since the last keepalive.
                let sent = last_tx.unwrap_or(now);
                next = next.min(sent + Duration::from_secs(u64::from(every)));
            }
        }
        wait = if busy {
            BUSY_TICK
        } else {
            next.saturating_duration_since(now).max(BUSY_TICK)
        };
    }
}

impl Shared {
    /// An IP packet from the tun: route it to its peer and send it on the peer's active path.
    /// Datagrams for a direct path join `batch`, which the caller flushes after the burst.
    fn send_to_peer(&self, packet: &[u8], out: &mut [u8], batch: &mut SendBatch) {
        let Some((_, dst)) = packet_addrs(packet) else {
            self.counters.tun_garbage(1);
            return;
        };
        let table = self.table.load();
        let Some(peer) = table.routes.lookup(dst) else {
            tracing::trace!(%dst, "no peer for destination");
            self.counters.no_route(1);
            return;
        };
        if self.rules.load().is_some() {
            self.track_outbound(peer, packet);
        }
        peer.counters.tx_packets(1);
        peer.counters.tx_bytes(packet.len() as u64);
        self.note_activity(peer);
        let active = peer.active_path();
        let Some(direct) = active.filter(|a| a.path.is_udp()) else {
            // Another path, or none: one datagram at a time, after what is batched.
            batch.flush(&self.udp, Instant::now());
            let result = peer.tunn.lock().encapsulate(packet, out);
            self.after_encapsulate(peer, result);
            return;
        };
        // boringtun needs payload + 32 bytes and never less than a handshake initiation.
        let need = (packet.len() + 32).max(148);
        let room = batch.room(&self.udp, peer, &direct, need);
        let result = peer.tunn.lock().encapsulate(packet, room);
        match result {
            TunnResult::WriteToNetwork(d) => {
                let n = d.len();
                batch.commit(&self.udp, n);
            }
            other => self.after_encapsulate(peer, other),
        }
    }

    /// What `encapsulate` said, when it is not a datagram for the batch.
    fn after_encapsulate(&self, peer: &Peer, result: TunnResult<'_>) {
        match result {
            TunnResult::WriteToNetwork(d) => self.transmit(peer, d, Instant::now()),
            // Queued inside boringtun until the handshake completes.
            TunnResult::Done => {}
            TunnResult::Err(e) => {
                tracing::trace!(peer = %peer.key, error = ?e, "encapsulate failed");
                peer.counters.rejected(1);
            }
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
        }
    }

    /// Sends a WireGuard datagram on the peer's active path.
    pub(crate) fn transmit(&self, peer: &Peer, datagram: &[u8], now: Instant) {
        let Some(path) = peer.active_path() else {
            peer.counters.no_path(1);
            // Initiations are not held: the control plane sends a fresh one on the first path,
            // and a replayed older one would only be answered and rejected.
            if datagram.first() != Some(&HANDSHAKE_INITIATION) {
                let mut held = peer.held.lock();
                held.clear();
                held.extend_from_slice(datagram);
            }
            // The control plane hears at once (at drops 1, 2, 4, 8, … so a flood costs a few
            // messages): a handshake WireGuard tried now was lost and is sent again on the
            // first path.
            if peer.counters.snapshot().no_path.is_power_of_two() {
                self.report(PlaneEvent::NoPath { peer: peer.key });
            }
            return;
        };
        send_on(peer, &path, datagram, now);
    }

    /// A datagram from the network: authenticate it with the right peer's session, deliver what
    /// it carries, and note the path as alive.
    fn receive(&self, datagram: &[u8], source: Source, rx: &mut Rx) {
        if let Source::Direct(from) = source {
            // The engine's socket carries ICE's STUN too (DESIGN 2).
            match demux::classify(datagram) {
                Datagram::WireGuard => {}
                Datagram::Stun => {
                    tracing::trace!(%from, len = datagram.len(), "STUN for ICE");
                    self.ice.deliver(datagram, from);
                    return;
                }
                Datagram::NetbirdPunch => {
                    tracing::trace!(%from, "NetBird's hole punch");
                    return;
                }
                Datagram::Other => {
                    tracing::trace!(%from, len = datagram.len(), "neither WireGuard nor STUN");
                    self.counters.net_garbage(1);
                    return;
                }
            }
        }
        let Rx {
            plain: out,
            tun: tun_out,
        } = rx;
        let table = self.table.load();
        let Some((peer, message)) = self.identify(&table, datagram, source) else {
            return;
        };
        let src_ip = match source {
            Source::Direct(addr) => Some(addr.ip()),
            Source::Path { .. } => None,
        };
        let now = Instant::now();
        let mut tunn = peer.tunn.lock();
        match tunn.decapsulate(src_ip, datagram, out) {
            TunnResult::Err(e) => {
                drop(tunn);
                tracing::trace!(peer = %peer.key, error = ?e, "datagram rejected");
                peer.counters.rejected(1);
            }
            TunnResult::WriteToNetwork(reply) if reply.first() == Some(&COOKIE_REPLY_TYPE) => {
                drop(tunn);
                // Under load: answer the way it came, but it authenticated nothing, so the
                // endpoint does not move and the path earns no proof of life.
                self.reply_unauthenticated(peer, source, reply, now);
            }
            TunnResult::WriteToNetwork(reply) => {
                // The reply leaves on the path its request came on.
                let path = message.and_then(|m| self.path_for(peer, source, now, datagram.len(), m));
                if let Some(path) = &path {
                    send_on(peer, path, reply, now);
                }
                self.note_handshake(peer, &tunn, now);
                // Packets boringtun queued during the handshake go out now.
                while let TunnResult::WriteToNetwork(d) = tunn.decapsulate(None, &[], out) {
                    self.transmit(peer, d, now);
                }
            }
            TunnResult::WriteToTunnelV4(packet, src) => {
                drop(tunn);
                if let Some(m) = message {
                    self.path_for(peer, source, now, datagram.len(), m);
                }
                self.deliver(&table, peer, packet, IpAddr::V4(src), now, tun_out);
            }
            TunnResult::WriteToTunnelV6(packet, src) => {
                drop(tunn);
                if let Some(m) = message {
                    self.path_for(peer, source, now, datagram.len(), m);
                }
                self.deliver(&table, peer, packet, IpAddr::V6(src), now, tun_out);
            }
            TunnResult::Done => {
                // A keepalive, or a cookie reply (which proves nothing).
                if let Some(m) = message {
                    self.path_for(peer, source, now, datagram.len(), m);
                }
                self.note_handshake(peer, &tunn, now);
            }
        }
    }

    /// The peer a datagram belongs to (the path's own peer, the session index, or for a
    /// handshake initiation the static key inside it), and what the datagram proves once it
    /// authenticates (`None`: a cookie reply, which proves nothing).
    fn identify<'t>(
        &self,
        table: &'t PeerTable,
        datagram: &[u8],
        source: Source,
    ) -> Option<(&'t Arc<Peer>, Option<Authenticated>)> {
        let packet = match Tunn::parse_incoming_packet(datagram) {
            Ok(p) => p,
            Err(_) if demux::classify(datagram) == Datagram::NetbirdPunch => {
                tracing::trace!(?source, "NetBird's hole punch");
                return None;
            }
            Err(_) => {
                tracing::trace!(len = datagram.len(), "not a WireGuard message");
                self.counters.net_garbage(1);
                return None;
            }
        };
        if matches!(packet, Packet::HandshakeInit(_) | Packet::HandshakeResponse(_)) {
            // The limiter counts handshakes per second: its count must start afresh each second
            // while handshakes arrive (a flood, or peers after one), even when every peer is
            // quiet and the timer task sleeps for seconds (DESIGN 12). A no-op within a second.
            self.rate_limiter.reset_count();
        }
        let message = match &packet {
            Packet::HandshakeInit(_) => Some(Authenticated::HandshakeInitiation),
            Packet::HandshakeResponse(_) => Some(Authenticated::HandshakeResponse),
            Packet::PacketCookieReply(_) => None,
            Packet::PacketData(_) => Some(Authenticated::Data),
        };
        let peer = match (source, packet) {
            (Source::Path { peer, .. }, _) => table.by_key.get(&peer),
            (Source::Direct(from), Packet::HandshakeInit(init)) => {
                if !self.screen_initiation(datagram, from) {
                    return None;
                }
                parse_handshake_anon(&self.static_private, &self.static_public, &init)
                    .ok()
                    .and_then(|half| table.by_key.get(&PublicKey::from_bytes(half.peer_static_public)))
            }
            (Source::Direct(_), Packet::HandshakeResponse(r)) => table.by_session_index(r.receiver_idx),
            (Source::Direct(_), Packet::PacketCookieReply(c)) => table.by_session_index(c.receiver_idx),
            (Source::Direct(_), Packet::PacketData(d)) => table.by_session_index(d.receiver_idx),
        };
        if peer.is_none() {
            tracing::trace!(?source, "WireGuard message for an unknown peer or session");
            self.counters.unknown_peer(1);
        }
        Some((peer?, message))
    }

    /// A rate limiter of boringtun's (`initiation_screen`) sees a handshake initiation on our
    /// socket before we spend a Diffie-Hellman on finding its sender: a bad MAC1 (garbage, or
    /// not meant for our key) costs one hash and is dropped; under load (more than
    /// `HANDSHAKE_RATE_LIMIT` a second) a sender without a valid cookie gets a cookie reply
    /// instead (WireGuard's DoS defence, section 5.3 of its paper). True: go on and find the
    /// sender. (Should the peers' own limiter be under load at the same time, a peer answers
    /// two different cookies in turn until one of the loads passes: both need over 1000
    /// handshakes a second.)
    fn screen_initiation(&self, datagram: &[u8], from: SocketAddr) -> bool {
        self.initiation_screen.reset_count();
        let mut cookie = [0u8; COOKIE_REPLY_LEN];
        match self
            .initiation_screen
            .verify_packet(Some(from.ip()), datagram, &mut cookie)
        {
            Ok(_) => true,
            Err(TunnResult::WriteToNetwork(reply)) => {
                self.counters.cookie_replies(1);
                if let Err(e) = self.udp.try_send_to(reply, from) {
                    tracing::trace!(error = %e, "cookie reply not sent");
                }
                false
            }
            Err(
                TunnResult::Err(_)
                | TunnResult::Done
                | TunnResult::WriteToTunnelV4(..)
                | TunnResult::WriteToTunnelV6(..),
            ) => {
                tracing::trace!(%from, "handshake initiation with a bad MAC");
                self.counters.bad_mac(1);
                false
            }
        }
    }

    /// The path an authenticated datagram of `len` bytes arrived on, which it proves alive.
    /// For the engine's own socket this is the peer's direct path, created or re-aimed to the
    /// sender (WireGuard's roaming).
    fn path_for(
        &self,
        peer: &Peer,
        source: Source,
        now: Instant,
        len: usize,
        message: Authenticated,
    ) -> Option<Arc<AttachedPath>> {
        let path = match source {
            Source::Direct(from) => self.direct_path_from(peer, from),
            Source::Path { path, .. } => peer.path(path)?,
        };
        if path.stats.on_rx(now, len, message) {
            // A new path's first proof: the control plane may be observing this peer rarely.
            self.report(PlaneEvent::FirstProof {
                peer: peer.key,
                id: path.id,
            });
        }
        Some(path)
    }

    /// The peer's direct path to `from`. A new or re-aimed one is reported to the control
    /// plane, which decides whether it carries traffic; a re-aimed one keeps its active status,
    /// so a plain WireGuard peer follows its endpoint as it roams.
    fn direct_path_from(&self, peer: &Peer, from: SocketAddr) -> Arc<AttachedPath> {
        match peer.direct_path(&self.udp, from, || self.next_path_id()) {
            DirectPath::Same(path) => path,
            DirectPath::Reaimed(path) => {
                self.report(PlaneEvent::PathAdded {
                    peer: peer.key,
                    id: path.id,
                });
                path
            }
            DirectPath::Created(path) => {
                self.report(PlaneEvent::PathAdded {
                    peer: peer.key,
                    id: path.id,
                });
                path
            }
        }
    }

    fn reply_unauthenticated(&self, peer: &Peer, source: Source, reply: &[u8], now: Instant) {
        let sent = match source {
            Source::Direct(from) => self
                .udp
                .try_send_to(reply, from)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Source::Path { path, .. } => match peer.path(path) {
                Some(p) => p.send(now, reply).map_err(|e| e.to_string()),
                None => Err("path gone".to_owned()),
            },
        };
        if let Err(error) = sent {
            tracing::trace!(peer = %peer.key, %error, "cookie reply not sent");
        }
    }

    /// A decrypted IP packet: cryptokey routing says its source must route back to the peer
    /// that sent it; then it goes to the tun.
    fn deliver(
        &self,
        table: &PeerTable,
        peer: &Arc<Peer>,
        packet: &[u8],
        src: IpAddr,
        now: Instant,
        tun_out: &mut TunOut,
    ) {
        let owner = table.routes.lookup(src);
        if !owner.is_some_and(|o| Arc::ptr_eq(o, peer)) {
            tracing::trace!(peer = %peer.key, %src, "source outside the peer's allowed IPs");
            peer.counters.spoofed_source(1);
            return;
        }
        if let Some(rules) = self.rules.load().as_deref().filter(|r| !r.allow_all) {
            if !self.filter_inbound(peer, rules, packet, now) {
                return;
            }
        }
        self.note_activity(peer);
        self.write_tun(tun_out, peer, packet);
    }

    /// A packet to the peer starts or refreshes its flow, so that the replies pass the filter.
    fn track_outbound(&self, peer: &Peer, packet: &[u8]) {
        let tracked = peer.filter.outbound(packet, Instant::now());
        match tracked {
            Tracked::Yes { evicted: true } => peer.counters.filter_table_full(1),
            Tracked::Yes { evicted: false } | Tracked::No => {}
        }
    }

    /// The filter's verdict on a decrypted packet: true if it may go to the tun. A drop is
    /// counted, and logged at most once per [`DROP_LOG_INTERVAL`] per peer.
    fn filter_inbound(&self, peer: &Peer, rules: &RuleSet, packet: &[u8], now: Instant) -> bool {
        let reason = match peer.filter.inbound(rules, packet, now) {
            Verdict::Pass => return true,
            Verdict::Drop(reason) => reason,
        };
        let log = peer.filter.should_log_drop(now, DROP_LOG_INTERVAL);
        match reason {
            DropReason::NoRule => peer.counters.filter_no_rule(1),
            DropReason::Denied => peer.counters.filter_denied(1),
            DropReason::Malformed => peer.counters.filter_malformed(1),
        }
        if log {
            let header = Header::parse(packet);
            tracing::debug!(peer = %peer.key, ?reason, ?header, "inbound packet dropped by the filter");
        }
        false
    }

    /// Data moved for `peer`. After a quiet spell, the timer task (asleep) and the control plane
    /// (observing rarely) hear at once; otherwise this is one relaxed load.
    fn note_activity(&self, peer: &Peer) {
        use std::sync::atomic::Ordering;
        if peer.quiet.load(Ordering::Relaxed) && peer.quiet.swap(false, Ordering::Relaxed) {
            self.timer_wake.notify_one();
            self.report(PlaneEvent::Activity { peer: peer.key });
        }
    }

    /// Raises `HandshakeCompleted` once per new WireGuard session.
    pub(super) fn note_handshake(&self, peer: &Peer, tunn: &Tunn, now: Instant) {
        let Some(since) = tunn.time_since_last_handshake() else {
            return;
        };
        let Some(at) = now.checked_sub(since) else { return };
        let mut reported = peer.reported_handshake.lock();
        // boringtun's clock has coarse ticks; a second apart is a different handshake.
        let is_new = reported.is_none_or(|r| at.saturating_duration_since(r) > Duration::from_secs(1));
        if is_new {
            *reported = Some(at);
            drop(reported);
            tracing::debug!(peer = %peer.key, "handshake completed");
            let _ = self.events.send(Event::HandshakeCompleted { peer: peer.key });
        }
    }
}

fn send_on(peer: &Peer, path: &AttachedPath, datagram: &[u8], now: Instant) {
    if let Err(e) = path.send(now, datagram) {
        tracing::trace!(peer = %peer.key, path = ?path.id, error = %e, "send failed");
        peer.counters.send_failed(1);
    }
}
