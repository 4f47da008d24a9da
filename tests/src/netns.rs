//! A network namespace for one test, joined to the test's own namespace by a veth pair: a real link
//! whose conditions the test sets with `tc`. Made with `ip` (iproute2, as root) and removed on drop.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Namespace {
    pub name: String,
    /// The veth end on the test's side (shape the namespace's downlink on it).
    pub host_dev: String,
    /// The address of the test's side of the link (a server listening there is reachable from inside).
    pub host_ip: IpAddr,
    /// The address inside the namespace.
    pub inner_ip: IpAddr,
    /// The veth end inside the namespace (cut the link from inside on it).
    pub inner_dev: String,
    /// Where [`Namespace::address_change`] moves the namespace: (its new address, the test side's).
    moved: (Ipv4Addr, Ipv4Addr),
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2; tests/setup.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "ip {} failed (network namespaces need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Namespace {
    /// A namespace named after `tag` and this process, with a /30 link in 10.203.0.0/16 (test-only
    /// addresses that exist only while the test runs).
    pub fn create(tag: &str) -> Namespace {
        // Unique per process and, for up to four namespaces, per test within it.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4;
        let n = (std::process::id() % 4_000) * 4 + k;
        let name = format!("samtal-{tag}-{n}");
        // Interface names are at most 15 bytes.
        let host_dev = format!("st{n}h");
        let inner_dev = format!("st{n}n");
        let base = 4 * n; // a /30 each: .1 here, .2 inside
        let (hi, lo) = ((base / 256) as u8, (base % 256) as u8);
        let host_ip = Ipv4Addr::new(10, 203, hi, lo + 1);
        let inner_ip = Ipv4Addr::new(10, 203, hi, lo + 2);
        // A namespace left over by a killed run of the same process id is replaced.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_dev]).output();
        ip(&["netns", "add", &name]);
        let ns = Namespace {
            name,
            host_dev,
            host_ip: host_ip.into(),
            inner_ip: inner_ip.into(),
            inner_dev: inner_dev.clone(),
            moved: (Ipv4Addr::new(10, 204, hi, lo + 2), Ipv4Addr::new(10, 204, hi, lo + 1)),
        };
        ip(&["link", "add", &ns.host_dev, "type", "veth", "peer", "name", &inner_dev]);
        ip(&["link", "set", &inner_dev, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &ns.host_dev]);
        ip(&["link", "set", &ns.host_dev, "up"]);
        ns.exec_ip(&["addr", "add", &format!("{inner_ip}/30"), "dev", &inner_dev]);
        ns.exec_ip(&["link", "set", &inner_dev, "up"]);
        ns.exec_ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn exec_ip(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Drops every UDP packet into or out of the namespace (nftables), as a network that lets only
    /// TCP through does.
    pub fn block_udp(&self) {
        use std::io::Write;
        let rules = "table inet samtal_block_udp {\n\
            chain out { type filter hook output priority 0; meta l4proto udp drop; }\n\
            chain in { type filter hook input priority 0; meta l4proto udp drop; }\n\
            }\n";
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nft (nftables; tests/setup.sh installs it): {e}"));
        nft.stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("rules written");
        let out = nft.wait_with_output().expect("nft ran");
        assert!(
            out.status.success(),
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Takes the link down (`false`) or up again, from inside: the test's side loses its carrier
    /// but keeps its address, so a server listening there stays up for everyone else.
    pub fn set_link(&self, up: bool) {
        self.exec_ip(&["link", "set", &self.inner_dev, if up { "up" } else { "down" }]);
    }

    /// Moves the calling thread into the namespace: sockets it opens from then on, and threads it
    /// starts (a runtime built on it), are inside. For in-process peers that must sit behind the
    /// link, where a child process would be started with `ip netns exec`.
    pub fn enter(&self) {
        Self::enter_named(&self.name);
    }

    /// [`Namespace::enter`] by the namespace's name (for a thread that does not own the namespace).
    pub fn enter_named(name: &str) {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(format!("/run/netns/{name}"))
            .unwrap_or_else(|e| panic!("namespace {name} has no handle: {e}"));
        // SAFETY: setns on a valid descriptor changes only this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }

    /// A script in `dir` that moves the namespace to another address, as a laptop that changes
    /// networks: its address goes, a new one in another subnet comes, and the test's side stays
    /// reachable (at `host_ip`, through the new subnet). Returns the script and the new address.
    pub fn address_change(&self, dir: &Path) -> (PathBuf, IpAddr) {
        use std::os::unix::fs::PermissionsExt;
        let (inner, host) = self.moved;
        let (ns, dev, host_dev, host_ip) = (&self.name, &self.inner_dev, &self.host_dev, self.host_ip);
        let script = format!(
            "#!/bin/sh\nset -e\nip addr add {host}/30 dev {host_dev}\n\
             ip -n {ns} addr flush dev {dev}\nip -n {ns} addr add {inner}/30 dev {dev}\n\
             ip -n {ns} route add {host_ip}/32 dev {dev} src {inner}\n"
        );
        let path = dir.join(format!("move-{}", self.name));
        std::fs::write(&path, script).expect("write the address change");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("make it executable");
        (path, inner.into())
    }

    /// A script in `dir` that runs `program` (with its arguments) inside the namespace.
    pub fn wrapper(&self, program: &Path, dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("in-{}", self.name));
        let script = format!(
            "#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n",
            self.name,
            program.display()
        );
        std::fs::write(&path, script).expect("write the wrapper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("make it executable");
        path
    }
}

/// A script in `dir` that runs `program` (with its arguments) in this test process's network
/// namespace, for a driver that runs inside a test namespace but starts a browser that must stay
/// outside it. Valid while the test process runs.
pub fn outside_wrapper(program: &Path, dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("outside");
    let script = format!(
        "#!/bin/sh\nexec nsenter --net=/proc/{}/ns/net {} \"$@\"\n",
        std::process::id(),
        program.display()
    );
    std::fs::write(&path, script).expect("write the wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("make it executable");
    path
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        let _ = Command::new("ip").args(["link", "del", &self.host_dev]).output();
    }
}
