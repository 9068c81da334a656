//! A tun device over a raw, non-blocking fd driven by tokio's reactor.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::framing::Framing;
use super::offload::VNET_HDR_LEN;

/// Whether dropping the device closes the fd. Android hands the engine a detached fd it must
/// close; Apple's extension keeps ownership of its utun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdOwnership {
    Owned,
    Borrowed,
}

#[derive(Debug, thiserror::Error)]
pub enum TunError {
    #[error("tun fd {fd} is not usable: {source}")]
    BadFd { fd: RawFd, source: io::Error },
    #[error("opening /dev/net/tun: {0}")]
    Open(io::Error),
    #[error("configuring interface {name}: {detail}")]
    Configure { name: String, detail: String },
}

/// Packets in and out of a tun fd. Reads and writes may run concurrently from different tasks.
#[derive(Debug)]
pub struct Tun {
    fd: AsyncFd<Fd>,
    framing: Framing,
}

#[derive(Debug)]
struct Fd {
    raw: RawFd,
    ownership: FdOwnership,
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.raw
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        if self.ownership == FdOwnership::Owned {
            // SAFETY: we own this fd and nothing else uses it after drop.
            unsafe { libc::close(self.raw) };
        }
    }
}

impl Tun {
    /// Wraps `fd`, switching it to non-blocking mode. Must be called inside a tokio runtime.
    pub fn from_fd(fd: RawFd, framing: Framing, ownership: FdOwnership) -> Result<Self, TunError> {
        let inner = Fd { raw: fd, ownership };
        set_nonblocking(fd).map_err(|source| TunError::BadFd { fd, source })?;
        // SAFETY: `Fd` holds a valid descriptor that nothing replaces or closes while the
        // AsyncFd is registered (it closes it, if owned, only when dropped).
        let fd = unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE | Interest::WRITABLE) }
            .map_err(|e| TunError::BadFd { fd, source: e.into() })?;
        Ok(Self { fd, framing })
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Reads one frame into `buf` and returns the IP packet inside it: a sub-slice of `buf`, or
    /// `Ok(None)` for a frame whose framing is wrong (the caller counts it and reads on).
    pub async fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<Option<&'a [u8]>> {
        let n = self.recv_frame(buf).await?;
        let frame = buf.get(..n).unwrap_or_default();
        Ok(self.framing.payload(frame))
    }

    /// As [`Tun::recv`], without waiting: `WouldBlock` when no frame is queued. Drains what
    /// one wakeup found, so the reactor is asked once per burst rather than per packet.
    pub fn try_recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<Option<&'a [u8]>> {
        let n = self.try_recv_frame(buf)?;
        let frame = buf.get(..n).unwrap_or_default();
        Ok(self.framing.payload(frame))
    }

    /// Reads one frame, header included, into `buf` (at least [`super::MAX_FRAME`] bytes for an
    /// offloading tun) and returns its length; [`Framing::split`] yields its packets. Zero: the
    /// other side closed.
    pub async fn recv_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| read(fd.get_ref().raw, &mut *buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// As [`Tun::recv_frame`], without waiting: `WouldBlock` when no frame is queued.
    pub fn try_recv_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.try_io(Interest::READABLE, |fd| read(fd.raw, &mut *buf))
    }

    /// Writes one IP packet without waiting: a full device drops the packet, as a kernel tun
    /// queue does. Returns whether it was written.
    pub fn try_send(&self, packet: &[u8]) -> io::Result<bool> {
        let raw = self.fd.get_ref().raw;
        let result = match self.framing {
            Framing::RawIp => write(raw, packet),
            Framing::AppleUtun => {
                let Some(header) = self.framing.header_for(packet) else {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an IP packet"));
                };
                writev2(raw, &header, packet)
            }
            // One complete packet: nothing for the kernel to do but take it.
            Framing::LinuxVnet => writev2(raw, &[0u8; VNET_HDR_LEN], packet),
        };
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes one frame of an offloading tun ([`Framing::LinuxVnet`]): its `virtio_net_hdr` and
    /// the (possibly coalesced) packet behind it, without waiting. Returns whether it was
    /// written; on other framings it writes nothing and says so.
    pub fn try_send_frame(&self, header: &[u8; VNET_HDR_LEN], packet: &[u8]) -> io::Result<bool> {
        if self.framing != Framing::LinuxVnet {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a virtio header on a tun without offload",
            ));
        }
        match writev2(self.fd.get_ref().raw, header, packet) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes one IP packet, waiting while the device is full.
    pub async fn send(&self, packet: &[u8]) -> io::Result<()> {
        loop {
            if self.try_send(packet)? {
                return Ok(());
            }
            let mut guard = self.fd.writable().await?;
            guard.clear_ready();
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller handed us; F_GETFL/F_SETFL touch no memory of ours.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for buf.len() writable bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn write(fd: RawFd, packet: &[u8]) -> io::Result<usize> {
    // SAFETY: packet is valid for packet.len() readable bytes.
    let n = unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn writev2(fd: RawFd, header: &[u8], packet: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: header.as_ptr() as *mut _,
            iov_len: header.len(),
        },
        libc::iovec {
            iov_base: packet.as_ptr() as *mut _,
            iov_len: packet.len(),
        },
    ];
    // SAFETY: both iovecs point at live slices that writev only reads.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// A `socketpair(AF_UNIX, SOCK_SEQPACKET)`: both ends carry whole packets, like a tun fd. One end
/// goes to the engine, the other plays the operating system in tests and the demo.
pub fn packet_socketpair() -> io::Result<(RawFd, RawFd)> {
    // Apple's socketpair takes no SOCK_CLOEXEC: the flag is set on each end afterwards.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let kind = libc::SOCK_SEQPACKET;
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let [a, b] = fds;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    for fd in [a, b] {
        // SAFETY: fd is one of the two just opened; FD_CLOEXEC only changes its flags.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: both fds are ours and not yet handed out.
            unsafe {
                libc::close(a);
                libc::close(b);
            }
            return Err(e);
        }
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn raw_packets_cross_a_socketpair_both_ways() {
        let (a, b) = packet_socketpair().unwrap();
        let ta = Tun::from_fd(a, Framing::RawIp, FdOwnership::Owned).unwrap();
        let tb = Tun::from_fd(b, Framing::RawIp, FdOwnership::Owned).unwrap();
        ta.send(&[0x45, 1, 2, 3]).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(tb.recv(&mut buf).await.unwrap(), Some(&[0x45, 1, 2, 3][..]));
    }

    #[tokio::test]
    async fn utun_framing_adds_and_strips_the_family_header() {
        let (a, b) = packet_socketpair().unwrap();
        let utun = Tun::from_fd(a, Framing::AppleUtun, FdOwnership::Owned).unwrap();
        let os = Tun::from_fd(b, Framing::RawIp, FdOwnership::Owned).unwrap();
        utun.send(&[0x60, 9]).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            os.recv(&mut buf).await.unwrap(),
            Some(&[0, 0, 0, 30, 0x60, 9][..])
        );
        os.send(&[0, 0, 0, 2, 0x45, 7]).await.unwrap();
        assert_eq!(utun.recv(&mut buf).await.unwrap(), Some(&[0x45, 7][..]));
        os.send(&[0, 0, 0, 30, 0x45, 7]).await.unwrap();
        assert_eq!(
            utun.recv(&mut buf).await.unwrap(),
            None,
            "family header must match the packet"
        );
    }

    #[tokio::test]
    async fn borrowed_fd_stays_open_after_drop() {
        let (a, b) = packet_socketpair().unwrap();
        drop(Tun::from_fd(a, Framing::RawIp, FdOwnership::Borrowed).unwrap());
        // SAFETY: probing whether `a` is still open; F_GETFD has no side effects.
        assert!(unsafe { libc::fcntl(a, libc::F_GETFD) } >= 0);
        drop(Tun::from_fd(a, Framing::RawIp, FdOwnership::Owned).unwrap());
        // SAFETY: as above.
        assert!(unsafe { libc::fcntl(a, libc::F_GETFD) } < 0);
        // SAFETY: closing our own test fd.
        unsafe { libc::close(b) };
    }
}
