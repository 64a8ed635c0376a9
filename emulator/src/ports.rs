//! Ports for the processes emu starts, and what a process group actually listens on.
//!
//! Cloud Run apps bind every address (`gunicorn --bind :$PORT`, `app.listen(PORT)`, uvicorn
//! `--host 0.0.0.0`), so a port handed out as `PORT` must be free on every address, not only on
//! 127.0.0.1: a port someone holds on 127.0.0.2 or on `::` fails their bind with EADDRINUSE.
//! Between the check and the app's own bind another process may still take the port; the
//! supervisor then retries on another one ([`lost_port_race`]).
//!
//! [`listening_ports`] reads `/proc` by hand (two small text formats) rather than through the
//! `procfs` crate, whose whole dependency tree would serve these twenty lines.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// How many candidate ports to try before giving up (each one is free on IPv4's every address;
/// only a port also taken on IPv6 is tried again).
const ATTEMPTS: usize = 64;

/// A TCP port free on every IPv4 address (`0.0.0.0`) and, where the host has IPv6, on `::` too.
pub fn free_port() -> io::Result<u16> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        // Binding the wildcard with port 0 makes the kernel pick a port no IPv4 address holds.
        let v4 = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        let port = v4.local_addr()?.port();
        match free_on_v6(port) {
            Ok(()) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// Whether `[::]:port` (IPv6 only, since our IPv4 wildcard socket still holds the port) can be
/// bound. A host without IPv6 has nothing to clash with there.
fn free_on_v6(port: u16) -> io::Result<()> {
    let s = match Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)) {
        Ok(s) => s,
        Err(_) => return Ok(()),
    };
    s.set_only_v6(true)?;
    let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    match s.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `port` can be bound on every IPv4 address right now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// True when a start failed because its port was taken: the app said so (Python's `[Errno 98]
/// Address already in use`, Node's `EADDRINUSE`, gunicorn's `Connection in use`), or the port is
/// held by someone else now that the app is gone.
pub fn lost_port_race(output: &[String], port: u16) -> bool {
    const SIGNS: [&str; 4] = [
        "address already in use",
        "eaddrinuse",
        "connection in use",
        "address in use",
    ];
    let said_so = output.iter().any(|line| {
        let line = line.to_ascii_lowercase();
        SIGNS.iter().any(|s| line.contains(s))
    });
    said_so || !is_free(port)
}

/// What to say when an instance that never became ready listens, but not on the PORT it was
/// given (`listening`: its process group's ports); None when it listens on PORT or nowhere.
pub fn wrong_port(given: u16, listening: &BTreeSet<u16>, container_port: u16) -> Option<String> {
    if listening.is_empty() || listening.contains(&given) {
        return None;
    }
    let list: Vec<String> = listening.iter().map(u16::to_string).collect();
    let fixed = if listening.contains(&container_port) {
        format!(" (its containerPort, {container_port}, is what Cloud Run would set PORT to; emu runs many instances on one host, so each gets a free PORT of its own)")
    } else {
        String::new()
    };
    Some(format!(
        "It listens on port {} but was given PORT={given}{fixed}: make it listen on $PORT, e.g. `--port $PORT`, `--bind :$PORT`, `app.listen(process.env.PORT)` or `int(os.environ[\"PORT\"])`",
        list.join(", ")
    ))
}

/// The TCP ports processes of process group `pgid` listen on, from `/proc/<pid>/stat` (the
/// group), `/proc/<pid>/fd` (socket inodes) and `/proc/net/tcp{,6}` (listening sockets).
pub fn listening_ports(pgid: u32) -> BTreeSet<u16> {
    let mut inodes = HashSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if process_group(&stat) != Some(pgid) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Some(inode) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| socket_inode(&l.to_string_lossy()))
            {
                inodes.insert(inode);
            }
        }
    }
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|f| listeners(&std::fs::read_to_string(f).unwrap_or_default()))
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(port, _)| port)
        .collect()
}

/// The process group in a `/proc/<pid>/stat` line (the fifth field; the second, the command,
/// is in parentheses and may hold spaces).
fn process_group(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// The inode of an fd link `socket:[12345]`.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// (port, inode) of each listening socket in a `/proc/net/tcp` or `tcp6` table.
fn listeners(table: &str) -> Vec<(u16, u64)> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(3) != Some(&LISTEN) {
                return None;
            }
            let port = u16::from_str_radix(f.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            Some((port, f.get(9)?.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listeners_from_a_proc_net_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(listeners(table), vec![(8080, 4242)]);
    }

    #[test]
    fn says_which_port_it_listens_on_and_which_it_was_given() {
        let msg = wrong_port(41000, &BTreeSet::from([8000]), 8000).unwrap();
        assert!(
            msg.contains("listens on port 8000 but was given PORT=41000"),
            "{msg}"
        );
        assert!(msg.contains("containerPort, 8000"), "{msg}");
        assert!(msg.contains("$PORT"), "{msg}");
        assert_eq!(
            wrong_port(41000, &BTreeSet::from([41000, 9000]), 8000),
            None
        );
        assert_eq!(wrong_port(41000, &BTreeSet::new(), 8000), None);
    }

    #[test]
    fn finds_what_its_own_process_group_listens_on() {
        let l = TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let pgid = nix::unistd::getpgrp().as_raw() as u32;
        assert!(listening_ports(pgid).contains(&port));
    }

    #[test]
    fn reads_the_group_and_the_socket_inode() {
        assert_eq!(
            process_group("77 (my app (x)) S 1 4321 4321 0 -1 4194560"),
            Some(4321)
        );
        assert_eq!(socket_inode("socket:[998]"), Some(998));
        assert_eq!(socket_inode("pipe:[998]"), None);
    }

    #[test]
    fn a_port_held_on_another_loopback_address_is_never_handed_out() {
        let held: Vec<TcpListener> = (0..200)
            .filter_map(|_| TcpListener::bind(("127.0.0.2", 0)).ok())
            .collect();
        let taken: HashSet<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        for _ in 0..200 {
            let p = free_port().unwrap();
            assert!(!taken.contains(&p), "{p} is held on 127.0.0.2");
        }
    }

    #[test]
    fn an_app_that_says_its_port_is_taken_lost_the_race() {
        let free = free_port().unwrap();
        let said = ["OSError: [Errno 98] Address already in use".to_string()];
        assert!(lost_port_race(&said, free));
        assert!(!lost_port_race(&["boom".to_string()], free));
        let held = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(lost_port_race(&["boom".to_string()], port));
    }
}
