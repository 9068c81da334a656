//! `peerlink`: the engine on a Linux tun device, key tools, and a self-contained demo.

mod control;
mod demo;
mod firewall;
mod up;

use std::io::Read;
use std::process::ExitCode;

use peerlink_core::PrivateKey;

const USAGE: &str = "\
usage:
  peerlink up --config FILE     run the engine on a tun device (needs CAP_NET_ADMIN);
                                SIGUSR1 = the network changed (reconnect, restart ICE)
  peerlink up --management-url URL --setup-key KEY [--hostname NAME] [--interface NAME]
              [--key-file PATH] [--config FILE]
                                join a NetBird network: address, peers and servers come
                                from management; the identity (WireGuard key) is kept in
                                --key-file (default /var/lib/peerlink/INTERFACE.key) unless
                                the config file has private_key
  peerlink status [--interface NAME | --socket PATH]
                                print the peers of a running `peerlink up`
  peerlink genkey               print a new private key (base64)
  peerlink pubkey               read a private key on stdin, print its public key
  peerlink demo                 two engines in this process, ping through the tunnel, survive a faulty ICE path
";

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    #[error(transparent)]
    Up(#[from] up::UpError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    #[error("reading the private key from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("invalid private key: {0}")]
    Key(#[from] peerlink_core::keys::KeyError),
}

fn main() -> ExitCode {
    init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peerlink: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), CliError> {
    let Some((command, rest)) = args.split_first() else {
        return Err(CliError::Usage("no command given".into()));
    };
    match command.as_str() {
        "up" => {
            let args = up::UpArgs {
                config: flag(rest, "--config")?,
                interface: flag(rest, "--interface")?,
                management_url: flag(rest, "--management-url")?,
                setup_key: flag(rest, "--setup-key")?,
                hostname: flag(rest, "--hostname")?,
                key_file: flag(rest, "--key-file")?,
            };
            if args.config.is_none() && args.management_url.is_none() {
                return Err(CliError::Usage(
                    "up needs --config FILE or --management-url URL".into(),
                ));
            }
            Ok(up::run(args)?)
        }
        "status" => {
            let socket = match (flag(rest, "--socket")?, flag(rest, "--interface")?) {
                (Some(path), _) => path,
                (None, Some(name)) => control::socket_path(&name),
                (None, None) => control::socket_path(up::DEFAULT_INTERFACE),
            };
            print!("{}", control::query(&socket)?);
            Ok(())
        }
        "genkey" => {
            println!("{}", PrivateKey::generate().to_base64());
            Ok(())
        }
        "pubkey" => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(CliError::Stdin)?;
            println!("{}", PrivateKey::from_base64(&input)?.public_key().to_base64());
            Ok(())
        }
        "demo" => Ok(demo::run()?),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(CliError::Usage(format!("unknown command `{other}`"))),
    }
}

/// The value after `name` in `args`, if present.
fn flag(args: &[String], name: &str) -> Result<Option<String>, CliError> {
    let Some(pos) = args.iter().position(|a| a == name) else {
        return Ok(None);
    };
    match args.get(pos + 1) {
        Some(v) => Ok(Some(v.clone())),
        None => Err(CliError::Usage(format!("{name} needs a value"))),
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level (info for peerlink, warn otherwise).
/// webrtc-ice's routine "unknown TransactionID" warning shows only at debug ([`IceLogNoise`]).
///
/// [`IceLogNoise`]: peerlink_core::ice::IceLogNoise
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let default = if std::env::args().nth(1).as_deref() == Some("demo") {
        "warn,webrtc_ice=error"
    } else {
        // webrtc-ice warns about routine events (no pairs yet, unreachable STUN over IPv6).
        "warn,webrtc_ice=error,peerlink_core=info,peerlink=info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .finish()
        .with(peerlink_core::ice::IceLogNoise)
        .init();
}
