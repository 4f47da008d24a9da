//! Janus (the Meetecho WebRTC server, Debian's `janus` package) as the peer SFU of the side-by-side
//! benchmark: its process with a configuration of our own ([`Janus::start`]), its websocket API
//! ([`api`]), and a bridge that speaks the Samtal signaling protocol to our clients and Janus's
//! videoroom API to Janus ([`gateway`]), so that the very same `samtal-client` participants load
//! both servers.
//!
//! The configuration is Janus's tuned one: `event_loops` fixed (one per core by default) instead of
//! a thread per handle; only the videoroom plugin and the websocket transport; logging quiet.
//! Janus skips loopback interfaces when it chooses its ICE addresses, so it runs inside a network
//! namespace with an address of its own (the caller's `ip netns exec` wrapper).

pub mod api;
pub mod gateway;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where Debian installs Janus's plugins, transports, event handlers and loggers.
fn janus_lib_dir() -> PathBuf {
    PathBuf::from(format!("/usr/lib/{}-linux-gnu/janus", std::env::consts::ARCH))
}

/// Plugins and transports we do not load (the videoroom and the websocket transport stay).
const DISABLED_PLUGINS: &[&str] = &[
    "audiobridge",
    "duktape",
    "echotest",
    "lua",
    "nosip",
    "recordplay",
    "sip",
    "streaming",
    "textroom",
    "videocall",
    "voicemail",
];
const DISABLED_TRANSPORTS: &[&str] = &["http", "mqtt", "nanomsg", "pfunix", "rabbitmq"];

fn library_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("libjanus_{n}.so"))
        .collect::<Vec<_>>()
        .join(",")
}

/// How to start Janus.
pub struct JanusOptions {
    /// The `janus` binary.
    pub binary: PathBuf,
    /// Prefix of the command line, e.g. `ip netns exec NAME` (empty: run directly).
    pub wrapper: Vec<String>,
    /// The address its websocket API listens on (inside the namespace).
    pub ip: IpAddr,
    /// The websocket API's port.
    pub port: u16,
    /// `event_loops` (0 = stock Janus: a thread per handle).
    pub event_loops: usize,
}

/// A running Janus with its configuration directory; killed and cleaned up on drop.
pub struct Janus {
    child: Child,
    pub pid: u32,
    pub ws: SocketAddr,
    dir: PathBuf,
}

impl Janus {
    /// Writes a configuration directory and starts Janus on it.
    pub fn start(options: &JanusOptions) -> anyhow::Result<Janus> {
        let dir = std::env::temp_dir().join(format!("samtal-versus-janus-{}-{}", std::process::id(), options.port));
        std::fs::create_dir_all(&dir)?;
        write_config(&dir, options)?;
        let mut command = match options.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&options.binary);
                c
            }
            None => Command::new(&options.binary),
        };
        let log = std::fs::File::create(dir.join("janus.log"))?;
        let child = command
            .arg("--configs-folder")
            .arg(&dir)
            .arg("--disable-colors")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} (apt-get install janus)", options.binary.display()))?;
        let pid = child.id();
        Ok(Janus {
            child,
            pid,
            ws: SocketAddr::new(options.ip, options.port),
            dir,
        })
    }

    /// Waits (at most 20 s) until the websocket API accepts connections.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("janus exited at start ({status}); see {}", self.log().display());
            }
            if tokio::net::TcpStream::connect(self.ws).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("janus did not listen on {} within 20 s", self.ws);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.ws)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("janus.log")
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_config(dir: &Path, options: &JanusOptions) -> std::io::Result<()> {
    let lib = janus_lib_dir();
    let lib = lib.display();
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            "general: {{\n  configs_folder = \"{dir}\"\n  plugins_folder = \"{lib}/plugins\"\n  \
             transports_folder = \"{lib}/transports\"\n  events_folder = \"{lib}/events\"\n  \
             loggers_folder = \"{lib}/loggers\"\n  debug_level = 2\n  event_loops = {loops}\n  \
             interface = \"{ip}\"\n}}\n\
             media: {{}}\nnat: {{ nice_debug = false }}\n\
             plugins: {{ disable = \"{plugins}\" }}\n\
             transports: {{ disable = \"{transports}\" }}\n\
             loggers: {{ disable = \"libjanus_jsonlog.so\" }}\n\
             events: {{ broadcast = false }}\n",
            dir = dir.display(),
            loops = options.event_loops,
            ip = options.ip,
            plugins = library_list(DISABLED_PLUGINS),
            transports = library_list(DISABLED_TRANSPORTS),
        ),
    )?;
    std::fs::write(
        dir.join("janus.transport.websockets.jcfg"),
        format!(
            "general: {{ json = \"plain\" ws = true ws_port = {port} ws_ip = \"{ip}\" wss = false }}\n\
             admin: {{ admin_ws = false }}\n",
            port = options.port,
            ip = options.ip,
        ),
    )?;
    // Rooms are created through the API by the gateway, one per Samtal room name.
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {}\n")
}
