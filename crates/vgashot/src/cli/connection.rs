//! Which daemon a client command talks to, and how it trusts a remote one.
//!
//! 1. By default the local daemon, over `$VGASHOT_DIR/unix.socket` (or `--socket`): the socket's
//!    file permissions decide who may connect, as with incusd.
//! 2. `--remote https://HOST[:PORT]` talks TLS 1.3 to a daemon's `--listen` address, presenting
//!    the client certificate `--cert`/`--key` (by default `client.crt`/`client.key` in the
//!    configuration directory, made on first use as the `incus` client makes its own); the
//!    daemon's administrator trusts it with `vgashot trust add`.
//! 3. The server is trusted by pinning, as `incus remote add` does: `--accept-certificate` on
//!    first use stores the certificate the server presents in `servers/HOST_PORT.crt`, and every
//!    later connection requires that very certificate. A changed certificate is refused until
//!    the user removes the stored one, since only they can tell a reinstalled server from a
//!    machine in the middle.
//! 4. Like the `incus` client, a remote connection starts with `GET /1.0`, so that a refused
//!    certificate is reported before any command runs, with the file to look at.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use vgashot_client::{
    Client, ClientError, ClientIdentity, RemoteAddress, ServerPin, pem_fingerprint,
};

/// The options every client command takes to pick its daemon.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// The local daemon's Unix socket [default: $VGASHOT_DIR/unix.socket].
    #[arg(long, value_name = "PATH", conflicts_with = "remote")]
    pub socket: Option<PathBuf>,
    /// Talk to a remote daemon over TLS instead of the local socket (port 8443 when none is
    /// given), as a daemon started with `--listen` serves.
    #[arg(long, value_name = "https://HOST:PORT")]
    pub remote: Option<String>,
    /// The client certificate presented to the remote, which must trust it (`vgashot trust add`
    /// there) [default: client.crt in the configuration directory, made on first use].
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert [default: client.key beside the default certificate].
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub key: Option<PathBuf>,
    /// Trust the remote's certificate on first use and remember it (in
    /// servers/HOST_PORT.crt of the configuration directory); compare the fingerprint printed
    /// with the server's `certificate_fingerprint` first. A remembered certificate that changed
    /// is still refused.
    #[arg(long, requires = "remote")]
    pub accept_certificate: bool,
}

/// `vgashot remote ...`.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Make this client's certificate (client.crt and client.key in the configuration directory,
    /// $VGASHOT_CONF or ~/.config/vgashot) if missing, and print its fingerprint; the remote's
    /// administrator trusts it with `vgashot trust add client.crt`.
    GenerateCertificate,
}

/// Errors of picking and reaching the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Neither `VGASHOT_CONF` nor `HOME` says where the client's files are.
    #[error("cannot find the configuration directory: set VGASHOT_CONF or HOME")]
    NoConfigDirectory,
    /// The server's certificate was refused; the stored certificate is named for the user.
    #[error("{error} (the accepted certificate is {})", path.display())]
    Refused {
        /// The refusal.
        error: ClientError,
        /// The stored certificate of the server.
        path: PathBuf,
    },
    /// The stored server certificate cannot be read.
    #[error("{} is not a PEM certificate; remove it and accept the server's again", path.display())]
    InvalidPin {
        /// The file.
        path: PathBuf,
    },
    /// The server's certificate cannot be stored.
    #[error("cannot store the server certificate in {}", path.display())]
    StorePin {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading, making or presenting the client certificate failed, or the daemon is not there.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The client's configuration directory: `$VGASHOT_CONF`, or `~/.config/vgashot` (as the
/// `incus` client's `$INCUS_CONF` and `~/.config/incus`).
pub fn config_dir() -> Result<PathBuf, ConnectionError> {
    let non_empty = |name| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = non_empty("VGASHOT_CONF") {
        return Ok(PathBuf::from(dir));
    }
    non_empty("HOME")
        .map(|home| PathBuf::from(home).join(".config/vgashot"))
        .ok_or(ConnectionError::NoConfigDirectory)
}

/// Where the certificate of `remote` is pinned: `servers/HOST_PORT.crt`.
pub fn pin_path(config: &Path, remote: &RemoteAddress) -> PathBuf {
    config
        .join("servers")
        .join(format!("{}_{}.crt", remote.host, remote.port))
}

/// The client for the daemon `args` name (`dir` is `$VGASHOT_DIR`, for the default socket).
pub async fn connect(dir: &Path, args: &ConnectionArgs) -> Result<Client, ConnectionError> {
    let Some(url) = &args.remote else {
        let socket = args
            .socket
            .clone()
            .unwrap_or_else(|| dir.join("unix.socket"));
        return Ok(Client::new(socket));
    };
    let remote = RemoteAddress::parse(url)?;
    let config = config_dir()?;
    let identity = identity(&config, args)?;
    let pin_file = pin_path(&config, &remote);
    let pin = match std::fs::read(&pin_file) {
        Ok(pem) => ServerPin::Fingerprint(pem_fingerprint(&pem).ok_or_else(|| {
            ConnectionError::InvalidPin {
                path: pin_file.clone(),
            }
        })?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if args.accept_certificate {
                ServerPin::AcceptAny
            } else {
                ServerPin::Unknown
            }
        }
        Err(source) => {
            return Err(ClientError::Io {
                path: pin_file,
                source,
            }
            .into());
        }
    };
    let accepting = pin == ServerPin::AcceptAny;
    let client = Client::tls(remote.clone(), Some(identity.clone()), pin)?;
    // As the `incus` client, start with `GET /1.0`: a refused server certificate shows here,
    // before the command does anything, and a newly accepted one is stored.
    match client.request("GET", "/1.0", None).await {
        Ok(_) => {}
        Err(error @ ClientError::ChangedServer { .. }) => {
            return Err(ConnectionError::Refused {
                error,
                path: pin_file,
            });
        }
        Err(error) => return Err(error.into()),
    }
    if !accepting {
        return Ok(client);
    }
    let pem = client
        .server_certificate()
        .ok_or_else(|| ConnectionError::InvalidPin {
            path: pin_file.clone(),
        })?;
    let fingerprint =
        pem_fingerprint(pem.as_bytes()).ok_or_else(|| ConnectionError::InvalidPin {
            path: pin_file.clone(),
        })?;
    store_pin(&pin_file, &pem)?;
    eprintln!(
        "Accepted the certificate of {} (fingerprint {fingerprint}), stored in {}",
        remote.authority(),
        pin_file.display()
    );
    // From here on, this very certificate and no other, as every later run will require.
    Ok(Client::tls(
        remote,
        Some(identity),
        ServerPin::Fingerprint(fingerprint),
    )?)
}

/// The client certificate: `--cert`/`--key` as given, or the default pair, made on first use
/// (an explicit file that is missing is an error rather than silently made).
fn identity(config: &Path, args: &ConnectionArgs) -> Result<ClientIdentity, ConnectionError> {
    let (certificate, key) = identity_paths(config, args);
    if args.cert.is_none() && args.key.is_none() && !certificate.exists() && !key.exists() {
        return Ok(generate(&certificate, &key)?);
    }
    Ok(ClientIdentity::load(&certificate, &key)?)
}

/// The client certificate and key files: `--cert` and `--key`, a key beside an explicit
/// certificate (`NAME.key`), or `client.crt` and `client.key` in the configuration directory.
fn identity_paths(config: &Path, args: &ConnectionArgs) -> (PathBuf, PathBuf) {
    let certificate = args
        .cert
        .clone()
        .unwrap_or_else(|| config.join("client.crt"));
    let key = args.key.clone().unwrap_or_else(|| match &args.cert {
        Some(certificate) => certificate.with_extension("key"),
        None => config.join("client.key"),
    });
    (certificate, key)
}

/// How curl reaches the daemon, for commands that print a curl command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Curl {
    /// The local socket.
    Unix {
        /// The socket's path, quoted for a shell.
        socket: String,
        /// curl's options.
        options: String,
    },
    /// A remote daemon.
    Tls {
        /// `https://HOST:PORT`.
        base: String,
        /// curl's options: the pinned server certificate and the client certificate.
        options: String,
    },
}

/// The curl options that reach the daemon `args` name as this client does.
pub fn curl_options(dir: &Path, args: &ConnectionArgs) -> Result<Curl, ConnectionError> {
    let Some(url) = &args.remote else {
        let socket = args
            .socket
            .clone()
            .unwrap_or_else(|| dir.join("unix.socket"));
        let socket = shell_quote(&socket.display().to_string());
        return Ok(Curl::Unix {
            options: format!("--unix-socket {socket}"),
            socket,
        });
    };
    let remote = RemoteAddress::parse(url)?;
    let config = config_dir()?;
    let (certificate, key) = identity_paths(&config, args);
    let quote = |path: &Path| shell_quote(&path.display().to_string());
    Ok(Curl::Tls {
        base: remote.url(),
        options: format!(
            "--cacert {} --cert {} --key {}",
            quote(&pin_path(&config, &remote)),
            quote(&certificate),
            quote(&key)
        ),
    })
}

/// `text` as one shell word: as is when it is plain, else single-quoted.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"/._-+:=@,".contains(&byte));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Makes a client certificate, saying so on stderr as the `incus` client does.
fn generate(certificate: &Path, key: &Path) -> Result<ClientIdentity, ClientError> {
    eprintln!("Generating a client certificate. This may take a minute...");
    let user = std::env::var("USER").unwrap_or_else(|_| "vgashot".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default();
    ClientIdentity::generate(certificate, key, &format!("{user}@{host}"))
}

/// Writes the server's certificate where later runs look for it.
fn store_pin(path: &Path, pem: &str) -> Result<(), ConnectionError> {
    let store = |source| ConnectionError::StorePin {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(store)?;
    }
    std::fs::write(path, pem).map_err(store)
}

/// `vgashot remote generate-certificate`.
pub fn remote(command: RemoteCommand) -> Result<(), ConnectionError> {
    match command {
        RemoteCommand::GenerateCertificate => {
            let config = config_dir()?;
            let (certificate, key) = (config.join("client.crt"), config.join("client.key"));
            let identity = if certificate.exists() {
                eprintln!("{} already exists", certificate.display());
                ClientIdentity::load(&certificate, &key)?
            } else {
                let identity = generate(&certificate, &key)?;
                eprintln!("Made {} and {}", certificate.display(), key.display());
                identity
            };
            println!("{}", identity.fingerprint());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_quote("/var/lib/vgashot/unix.socket"),
            "/var/lib/vgashot/unix.socket"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn pins_are_named_by_host_and_port() {
        let remote = RemoteAddress::parse("https://example.org:9443").unwrap();
        assert_eq!(
            pin_path(Path::new("/c"), &remote),
            Path::new("/c/servers/example.org_9443.crt")
        );
    }
}
