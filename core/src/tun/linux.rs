//! Linux: create a tun interface (`IFF_TUN | IFF_NO_PI | IFF_VNET_HDR`, with TCP segmentation
//! offloaded to us) and give it addresses and an MTU. Used by the CLI and the lab; mobile
//! platforms hand us an fd instead.

use std::os::fd::RawFd;
use std::process::Command;

use super::{FdOwnership, Framing, Tun, TunError};
use crate::net::IpNet;

/// linux/if_tun.h: `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// linux/if_tun.h.
const IFF_TUN: libc::c_short = 0x0001;
/// linux/if_tun.h: no packet-information prefix, so frames are bare IP.
const IFF_NO_PI: libc::c_short = 0x1000;
/// linux/if_tun.h: each frame starts with a `virtio_net_hdr` (see `offload`).
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// linux/if_tun.h: `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// linux/if_tun.h: we complete checksums (TUN_F_CSUM) and cut TCP super-packets over IPv4 and
/// IPv6 (TUN_F_TSO4, TUN_F_TSO6); no ECN or UDP segmentation, which the kernel then does itself.
const TUN_OFFLOADS: libc::c_uint = 0x01 | 0x02 | 0x04;

/// Opens (creating if needed) the tun interface `name`, assigns `addresses`, sets `mtu` and
/// brings it up. Needs CAP_NET_ADMIN. Must be called inside a tokio runtime.
pub fn open(name: &str, addresses: &[IpNet], mtu: u16) -> Result<Tun, TunError> {
    let fd = open_tun_fd(name)?;
    let tun = Tun::from_fd(fd, Framing::LinuxVnet, FdOwnership::Owned)?;
    ip(name, &["link", "set", "dev", name, "mtu", &mtu.to_string()])?;
    for a in addresses {
        ip(name, &["addr", "add", &a.to_string(), "dev", name])?;
    }
    ip(name, &["link", "set", "dev", name, "up"])?;
    Ok(tun)
}

/// Gives the interface `name` new addresses, MTU and routes (management changed them): the
/// Linux form of "rebuild the tun", done in place since the fd stays valid.
pub fn reconfigure(name: &str, addresses: &[IpNet], mtu: u16, routes: &[IpNet]) -> Result<(), TunError> {
    ip(name, &["addr", "flush", "dev", name])?;
    ip(name, &["link", "set", "dev", name, "mtu", &mtu.to_string()])?;
    for a in addresses {
        ip(name, &["addr", "add", &a.to_string(), "dev", name])?;
    }
    for r in routes {
        ip(name, &["route", "replace", &r.to_string(), "dev", name])?;
    }
    Ok(())
}

fn open_tun_fd(name: &str) -> Result<RawFd, TunError> {
    let configure = |detail: String| TunError::Configure {
        name: name.to_owned(),
        detail,
    };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(configure(format!(
            "interface names have 1 to {} bytes",
            libc::IFNAMSIZ - 1
        )));
    }
    // SAFETY: the path is a NUL-terminated literal.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(TunError::Open(std::io::Error::last_os_error()));
    }
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
    // SAFETY: TUNSETIFF reads and writes the ifreq we pass.
    if unsafe { libc::ioctl(fd, TUNSETIFF as _, &mut req) } < 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: closing the fd we opened above.
        unsafe { libc::close(fd) };
        return Err(configure(format!("TUNSETIFF: {e}")));
    }
    // Without it the frames still carry the header, with one plain packet each.
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    if unsafe { libc::ioctl(fd, TUNSETOFFLOAD as _, TUN_OFFLOADS) } < 0 {
        let e = std::io::Error::last_os_error();
        tracing::debug!(error = %e, interface = name, "tun segmentation offload unavailable");
    }
    Ok(fd)
}

fn ip(name: &str, args: &[&str]) -> Result<(), TunError> {
    let configure = |detail: String| TunError::Configure {
        name: name.to_owned(),
        detail,
    };
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| configure(format!("running ip: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(configure(format!("ip {}: {}", args.join(" "), stderr.trim())));
    }
    Ok(())
}
