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
        let n = std::process::id() % 16_000;
        let name = format!("samtal-{tag}-{n}");
        // Interface names are at most 15 bytes.
        let host_dev = format!("st{n}h");
        let inner_dev = format!("st{n}n");
        let base = 4 * n; // a /30 per process: .1 here, .2 inside
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

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        let _ = Command::new("ip").args(["link", "del", &self.host_dev]).output();
    }
}
