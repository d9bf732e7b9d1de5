//! Command-line interface: argument definitions and dispatch to one module per command.

mod client;
mod issue;
mod keygen;
mod loan;
mod registry;
mod serve;
mod trust;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::clock::{Clock, FixedClock, SystemClock, Timestamp};
use crate::code::{CentreCode, KeyId, Purpose};

/// Exit status when every code verified.
pub const EXIT_VALID: u8 = 0;
/// Exit status when at least one code did not verify.
pub const EXIT_INVALID: u8 = 1;
/// Exit status for bad arguments, unreadable files and other errors.
pub const EXIT_ERROR: u8 = 2;

/// liangma (亮码): signed, single-use electronic provident-fund codes.
#[derive(Debug, Parser)]
#[command(name = "liangma", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a centre's ed25519 signing key (and its subject secret, if it has none yet).
    Keygen(KeygenArgs),
    /// Publish, rotate and revoke keys in a trust list file.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Issue a code for a member's deposit record.
    Issue(IssueArgs),
    /// Verify codes offline against a trust list (pipeline steps 1-5).
    Verify(VerifyArgs),
    /// Run the gRPC service (with no configuration: the embedded dev setup, in memory).
    Serve {
        /// Configuration file (TOML, docs/operations.md); every field has a default.
        #[arg(long, env = "LIANGMA_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Call a running service.
    Client(ClientArgs),
    /// Off-site loan evaluation and loan policy files.
    #[command(subcommand)]
    Loan(LoanCommand),
    /// Operator repairs of the registry in the configured store.
    #[command(subcommand)]
    Registry(RegistryCommand),
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Delete one member's registry record, so that the home centre's next publication is
    /// stored whatever its version (repairs a record pinned by a wrong version or unreadable).
    Forget {
        /// The service's configuration file (the store, and the issuers' subject secrets).
        #[arg(long, env = "LIANGMA_CONFIG")]
        config: Option<PathBuf>,
        /// The member's home centre (one the configuration issues for).
        #[arg(long)]
        centre: CentreCode,
        /// The member's ID number (hashed with the centre's subject secret, never stored).
        #[arg(long)]
        id_number: String,
    },
}

#[derive(Debug, Subcommand)]
enum LoanCommand {
    /// Evaluate an off-site loan offline, from codes verified now against a trust list; several
    /// --policy options compare policies side by side.
    #[command(after_help = "Exit status: 0 if the loan is possible under at least one policy, 1 if under none \
        (the reasons are printed), 2 for bad arguments, unreadable files or a code that is not valid.")]
    Evaluate(LoanEvaluateArgs),
    /// Validate a policy file (or a built-in policy) and summarize it.
    Check {
        /// A built-in policy name (jiaozuo-2024, jiaozuo-before-2024) or a policy file.
        policy: String,
    },
}

#[derive(Debug, Args)]
struct LoanEvaluateArgs {
    /// Trust list file.
    #[arg(long, env = "LIANGMA_TRUST_LIST")]
    trust: PathBuf,
    /// The loan centre evaluating (checked against the codes' audience).
    #[arg(long, env = "LIANGMA_CENTRE")]
    centre: CentreCode,
    /// Policies to apply (built-in name or file), repeatable; default jiaozuo-2024.
    #[arg(long = "policy")]
    policies: Vec<String>,
    /// Total house price in yuan (positive, at most 2 decimals).
    #[arg(long, allow_hyphen_values = true)]
    house_price_yuan: String,
    /// Second-hand house of this building age in years (omit for a new house).
    #[arg(long)]
    building_age: Option<u32>,
    /// Requested term in years (at least 1); the result says whether the policy allows it.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    term: Option<u32>,
    /// The co-borrowing spouse's code, if they deposit too.
    #[arg(long)]
    co_borrower: Option<String>,
    /// JSON instead of the side-by-side table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    time: TimeArg,
    /// The borrower's code.
    code: String,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The service's address (`https://…` for a node with [tls]: give --ca, --cert and --key).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// CA certificate (PEM) that issued the node's certificate.
    #[arg(long, requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,
    /// This client's certificate (PEM); its SAN URIs name the roles it acts in.
    #[arg(long, requires_all = ["ca", "key"])]
    cert: Option<PathBuf>,
    /// This client's private key (PEM, mode 0600).
    #[arg(long, requires_all = ["ca", "cert"])]
    key: Option<PathBuf>,
    /// The name the node's certificate must carry, when --server names it otherwise (e.g. a
    /// probe calling https://127.0.0.1:50051 inside the node's own pod).
    #[arg(long, requires = "ca")]
    server_name: Option<String>,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Issue a code for a member whose status the issuing centre has published.
    Issue {
        /// Issuing centre.
        #[arg(long)]
        issuer: CentreCode,
        /// The member's ID number.
        #[arg(long)]
        id_number: String,
        /// What the code is for.
        #[arg(long, default_value = "offsite-loan")]
        purpose: Purpose,
        /// Only this centre may accept it.
        #[arg(long)]
        audience: Option<CentreCode>,
        /// Also write the QR code as PNG.
        #[arg(long)]
        png: Option<PathBuf>,
        /// No digits (text and QR only): one Redis round trip instead of two.
        #[arg(long)]
        no_digits: bool,
    },
    /// Verify (and consume) a code.
    Verify {
        /// The code text.
        code: Option<String>,
        /// The digits form instead of the text.
        #[arg(long)]
        digits: Option<String>,
        /// Request id of this verification (default: a new random one). Give the id of an
        /// attempt whose answer was lost to retry it: the service answers it again, never as a
        /// second use.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// List a member's usage record.
    Usage {
        /// The member's home centre.
        #[arg(long)]
        issuer: CentreCode,
        /// The member's ID number.
        #[arg(long)]
        id_number: String,
    },
    /// Submit a key change to the trust directory (a centre's operator certificate).
    #[command(subcommand)]
    KeyChange(KeyChangeCommand),
    /// As the home centre's backend: open a member's code page and print its address (the
    /// session in it acts for the member until it expires).
    MemberPage {
        /// The member's home centre.
        #[arg(long)]
        issuer: CentreCode,
        /// The member's ID number (authenticated by the backend).
        #[arg(long)]
        id_number: String,
        /// Session lifetime in seconds (60 to 3600; default 900).
        #[arg(long)]
        lifetime: Option<u32>,
    },
    /// Print the directory's signed trust list (for offline verifiers: `liangma verify --trust
    /// FILE --directory-public-key HEX`).
    ExportTrustList,
    /// Ask gRPC health (grpc.health.v1) and print the status; exit 0 when SERVING, 1 otherwise
    /// (for readiness probes). With --alive, exit 0 whenever the server answers at all (for
    /// liveness probes: a node that cannot reach Redis is not ready, but restarting it cannot help).
    Health {
        /// The service to ask about (e.g. liangma.v1.VerifierService); default: the server as a whole.
        #[arg(long, default_value = "")]
        service: String,
        /// Exit 0 on any answer, SERVING or not.
        #[arg(long)]
        alive: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeyChangeCommand {
    /// Publish another key of the centre (a new centre needs --name and the national operator).
    Add {
        /// The centre.
        #[arg(long)]
        centre: CentreCode,
        /// The key file (PKCS#8 PEM) whose public key to publish; the private key never leaves.
        #[arg(long)]
        new_key: PathBuf,
        /// The centre's name, for a centre new to the list.
        #[arg(long)]
        name: Option<String>,
    },
    /// From now on the new key signs; the request is signed with the current key.
    Rotate {
        /// The centre.
        #[arg(long)]
        centre: CentreCode,
        /// The key that signs now (PKCS#8 PEM).
        #[arg(long)]
        current_key: PathBuf,
        /// The new key (PKCS#8 PEM).
        #[arg(long)]
        new_key: PathBuf,
    },
    /// Revoke a key: every code it signed fails from the next list on.
    Revoke {
        /// The centre.
        #[arg(long)]
        centre: CentreCode,
        /// The key's id (8 hex digits).
        #[arg(long)]
        key_id: String,
    },
    /// Set where the centre's node answers other nodes.
    SetNode {
        /// The centre.
        #[arg(long)]
        centre: CentreCode,
        /// `https://host:port`.
        #[arg(long)]
        address: String,
    },
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// The centre the key is for (6-digit division code).
    #[arg(long, env = "LIANGMA_CENTRE")]
    centre: CentreCode,
    /// Folder for the key files (created if missing).
    #[arg(long, default_value = "keys")]
    out_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
    /// Publish a centre's public key (creates the file and the centre if new).
    Add(TrustAddArgs),
    /// Start signing with a new key now; the centre's other keys stop signing but still
    /// verify the codes they signed before.
    Rotate(TrustRotateArgs),
    /// Revoke a key: every code it signed fails from now on.
    Revoke(TrustRevokeArgs),
    /// Print the trust list.
    Show(TrustFileArg),
    /// As the national directory: sign the trust list with a sequence number and a validity,
    /// for nodes and offline verifiers that pin the directory's key (docs/code-format.md §12).
    Sign(TrustSignArgs),
}

#[derive(Debug, Args)]
struct TrustSignArgs {
    #[command(flatten)]
    file: TrustFileArg,
    /// The directory's private key (PKCS#8 PEM, from `liangma keygen`).
    #[arg(long)]
    directory_key: PathBuf,
    /// The list's sequence number: higher than that of every list signed before.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    sequence: u64,
    /// Seconds until verifiers should have a newer list (then the list is stale).
    #[arg(long, default_value_t = 3_600)]
    next_update_secs: u32,
    /// Seconds until the list expires (then verification with it fails).
    #[arg(long, default_value_t = 86_400)]
    valid_secs: u32,
    /// The signed list to write (a new file).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    time: TimeArg,
}

#[derive(Debug, Args)]
struct TrustFileArg {
    /// Trust list file (JSON, docs/code-format.md §"Trust list").
    #[arg(long, env = "LIANGMA_TRUST_LIST")]
    trust: PathBuf,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PublicKeySource {
    /// Take the public key from this private key file (PKCS#8 PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The public key as 64 hex digits.
    #[arg(long)]
    public_key: Option<String>,
}

#[derive(Debug, Args)]
struct TrustAddArgs {
    #[command(flatten)]
    file: TrustFileArg,
    /// The centre (6-digit division code).
    #[arg(long)]
    centre: CentreCode,
    /// The centre's name; required when the centre is new.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    source: PublicKeySource,
    /// Start of the signing window (RFC 3339); default now.
    #[arg(long)]
    valid_from: Option<Timestamp>,
    /// End of the signing window (RFC 3339); default one year after the start.
    #[arg(long)]
    valid_until: Option<Timestamp>,
}

#[derive(Debug, Args)]
struct TrustRotateArgs {
    #[command(flatten)]
    file: TrustFileArg,
    /// The centre (6-digit division code).
    #[arg(long)]
    centre: CentreCode,
    #[command(flatten)]
    source: PublicKeySource,
    /// When the new key takes over (RFC 3339); default now.
    #[arg(long)]
    at: Option<Timestamp>,
    /// End of the new key's signing window; default one year after it takes over.
    #[arg(long)]
    valid_until: Option<Timestamp>,
}

#[derive(Debug, Args)]
struct TrustRevokeArgs {
    #[command(flatten)]
    file: TrustFileArg,
    /// The centre (6-digit division code).
    #[arg(long)]
    centre: CentreCode,
    /// The key to revoke (8 hex digits).
    #[arg(long)]
    key_id: KeyId,
}

#[derive(Debug, Args)]
struct IssueArgs {
    /// Trust list in which the signing key is published.
    #[arg(long, env = "LIANGMA_TRUST_LIST")]
    trust: PathBuf,
    /// The centre's signing key (PKCS#8 PEM).
    #[arg(long, env = "LIANGMA_SIGNING_KEY")]
    key: PathBuf,
    /// The centre's subject secret file.
    #[arg(long, env = "LIANGMA_SUBJECT_SECRET")]
    subject_secret: PathBuf,
    /// The member's deposit record (JSON, docs/code-format.md §"Deposit record"); `-` for stdin.
    #[arg(long)]
    record: PathBuf,
    /// What the code is for.
    #[arg(long, default_value = "offsite-loan")]
    purpose: Purpose,
    /// Restrict the code to one loan centre.
    #[arg(long)]
    audience: Option<CentreCode>,
    /// Longest validity in seconds; the code also expires at 24:00 China Standard Time.
    #[arg(long, env = "LIANGMA_CODE_LIFETIME_SECS", default_value_t = 86_400)]
    lifetime_secs: u32,
    /// Write the QR code as PNG to this file.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Write the QR code as SVG to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Also print the QR code as text art.
    #[arg(long)]
    qr: bool,
    #[command(flatten)]
    time: TimeArg,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Trust list file: a plain trust list, or with --directory-public-key a signed one.
    #[arg(long, env = "LIANGMA_TRUST_LIST")]
    trust: PathBuf,
    /// The national directory's public key (64 hex digits): the trust file must be a trust list
    /// signed with it, and not expired (a stale one is used with a warning).
    #[arg(long)]
    directory_public_key: Option<String>,
    /// The verifying centre (checked against a code's audience).
    #[arg(long, env = "LIANGMA_CENTRE")]
    centre: CentreCode,
    /// Purposes this counter serves (repeatable); default every purpose.
    #[arg(long = "purpose")]
    purposes: Vec<Purpose>,
    /// Accepted clock skew in seconds for codes issued "in the future".
    #[arg(long, default_value_t = crate::verify::DEFAULT_CLOCK_SKEW_SECONDS)]
    skew_secs: u32,
    /// Read codes from QR images (PNG or JPEG); repeatable.
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    /// One JSON object per verdict instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    time: TimeArg,
    /// Codes to verify; with neither codes nor images, one code per line is read from stdin.
    codes: Vec<String>,
}

#[derive(Debug, Args)]
struct TimeArg {
    /// Act as if it were this time (RFC 3339) instead of reading the system clock.
    #[arg(long)]
    at: Option<Timestamp>,
}

impl TimeArg {
    fn clock(&self) -> Box<dyn Clock> {
        match self.at {
            Some(at) => Box::new(FixedClock::new(at)),
            None => Box::new(SystemClock),
        }
    }
}

/// Runs a parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keygen(args) => keygen::run(&args),
        Command::Trust(command) => trust::run(command),
        Command::Issue(args) => issue::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Serve { config } => serve::run(config),
        Command::Client(args) => client::run(args),
        Command::Loan(command) => loan::run(command),
        Command::Registry(RegistryCommand::Forget { config, centre, id_number }) => {
            registry::forget(config.as_deref(), centre, &id_number)
        }
    }
}
