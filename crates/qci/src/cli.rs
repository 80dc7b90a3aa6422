//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "qci",
    version,
    about = "Self-hosted elastic container instances: run container groups on this machine"
)]
pub struct Cli {
    /// The qci server to talk to [default: the context's, else http://127.0.0.1:7070]
    #[arg(long, global = true, env = "QCI_SERVER")]
    pub server: Option<String>,
    /// The API key [default: the context's, else this host's admin key for a local server]
    #[arg(long, global = true, env = "QCI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificates (PEM) to trust for an https:// server, beside the system's
    #[arg(long, global = true, env = "QCI_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A context of the config file ($XDG_CONFIG_HOME/qci/config.yaml) [default: its current one]
    #[arg(long, global = true, env = "QCI_CONTEXT")]
    pub context: Option<String>,
    /// Act in this tenant (admin keys; others act in their own)
    #[arg(long, global = true, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Lists show every tenant's (admin keys)
    #[arg(long, global = true, conflicts_with = "tenant")]
    pub all_tenants: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the API, the controller and the node agent (as root)
    Serve(Box<ServeArgs>),
    /// Submit a container group from a YAML or JSON spec; prints its id
    Create(CreateArgs),
    /// List container groups
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show a container group
    Get(GetArgs),
    /// Show a group's container output
    Logs(LogsArgs),
    /// Run an image as a one-container group, as `docker run` does: in the foreground its
    /// output is printed and qci exits with the container's exit code
    Run(Box<RunArgs>),
    /// Run a command in a running container: prints its output, exits with its exit code
    Exec(ExecArgs),
    /// Connect to a running container's first process (one with stdin or tty): its terminal
    /// or standard input, and its output; exits with its exit code when it ends
    Attach {
        /// Group id or name
        group: String,
        /// The container (may be left out when the group has one)
        #[arg(short = 'c', long = "container")]
        container: Option<String>,
    },
    /// Show what happened to a group (or to every group)
    Events(EventsArgs),
    /// Update a group in place from a spec file: only changed containers are recreated
    Update(UpdateArgs),
    /// Restart a group: stop every container, then run the init containers again, then the rest
    Restart(GroupArg),
    /// Stop a group's containers and remove everything made for it
    #[command(alias = "rm")]
    Delete(DeleteArgs),
    /// Metered use per group: core-seconds, GiB-seconds and cost
    Usage(UsageArgs),
    /// Current resource use of every running container (or one group's)
    Top {
        /// Group id or name
        group: Option<String>,
    },
    /// Print the client's and the server's versions
    Version,
    /// Print a shell completion script: `source <(qci completion bash)`, or install it
    /// where the shell looks (/usr/share/bash-completion/completions/qci, a directory of
    /// zsh's $fpath as _qci, ~/.config/fish/completions/qci.fish)
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// This machine's qci instance (as root, with `qci serve` stopped)
    #[command(subcommand)]
    System(SystemCommand),
    /// Write the manual pages, qci.1 and one per subcommand (qci-create.1, ...), into DIR
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Save a server and an API key (read from standard input) as a context, and use it
    Login(LoginArgs),
    /// The contexts of the config file
    #[command(subcommand)]
    Context(ContextCommand),
    /// The key in use: its id, tenant and role
    Whoami,
    /// Tenants and their quotas (admin; `get` works for one's own tenant)
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// API keys (admin)
    #[command(subcommand)]
    Key(KeyCommand),
    /// What was changed, by which key, with what result; every exec session (admin)
    Audit(AuditArgs),
    /// The image store: pull, list, remove
    #[command(subcommand)]
    Image(ImageCommand),
    /// Image caches: images pulled ahead of time so groups start without downloading
    #[command(subcommand, name = "image-cache")]
    ImageCache(CacheCommand),
    /// Disks: storage created beforehand whose data outlives the groups that use it
    #[command(subcommand)]
    Disk(DiskCommand),
    /// VPCs: private networks; groups in one reach each other, nothing else does
    #[command(subcommand)]
    Vpc(VpcCommand),
    /// EIPs: addresses from the server's pool that publish a group's ports or give a VPC
    /// outbound access
    #[command(subcommand)]
    Eip(EipCommand),
    /// Firewalls: rules that guard a group's (or a VPC's groups') traffic
    #[command(subcommand)]
    Firewall(FirewallCommand),
    /// Nodes: the machines groups run on (this one, or a cluster's on etcd; admin keys)
    #[command(subcommand)]
    Node(NodeCommand),
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// List the nodes: Ready or NotReady, what each offers and holds
    Ls(OutputArgs),
    /// Show a node
    Get(GetArgs),
    /// Stop placing new groups on a node (those it has run on)
    Cordon {
        /// The node's name
        node: String,
    },
    /// Let a cordoned node take new groups again
    Uncordon {
        /// The node's name
        node: String,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// Where qci keeps its state, images and container files
    #[arg(long, default_value = "/var/lib/qci", env = "QCI_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address the API listens on
    #[arg(long, default_value = "127.0.0.1:7070", env = "QCI_LISTEN")]
    pub listen: SocketAddr,
    /// A registry (HOST:PORT) that may be reached over plain HTTP; loopback ones always may
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// A PEM file of CA certificates to trust for registries, beside the system roots
    #[arg(long = "registry-ca", value_name = "FILE")]
    pub registry_cas: Vec<std::path::PathBuf>,
    /// The most the image store may take (e.g. 20Gi); least recently used images that no
    /// container or image cache uses are removed to stay within it
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub image_store_max_size: Option<u64>,
    /// Crash-loop back-off: the wait before the second restart (doubling for each after)
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub restart_backoff_base: f64,
    /// Crash-loop back-off: the longest wait
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    pub restart_backoff_max: f64,
    /// Most processes per container when its spec sets no pids_limit (0: no limit)
    #[arg(long, default_value_t = 4096)]
    pub pids_limit: i64,
    /// Failed groups are deleted this many seconds after they failed
    #[arg(long, value_name = "SECONDS", default_value_t = 3600.0)]
    pub failed_group_ttl: f64,
    /// A deleted group's events stay readable this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 86400.0)]
    pub deleted_group_retention: f64,
    /// The supported specs (and prices) groups are normalised to, as YAML or JSON:
    /// `specs: [{cpu: 0.5, memory_gib: [1, 2]}, ...]`, `prices: {core_hour: .., gib_hour: ..}`
    #[arg(long, value_name = "FILE")]
    pub spec_table: Option<PathBuf>,
    /// Which disk types each instance type can attach, as YAML or JSON:
    /// `{standard: [standard], performance: [standard, performance]}` (the default)
    #[arg(long, value_name = "FILE")]
    pub disk_compat: Option<PathBuf>,
    /// The basic network's block, which groups naming no VPC join ("none": such groups get
    /// loopback only)
    /// (default 172.30.0.0/16)
    #[arg(long, value_name = "CIDR")]
    pub basic_subnet: Option<String>,
    /// Addresses EIPs are taken from: an address, a range A-B or a block A/len (repeatable)
    #[arg(long = "eip-pool", value_name = "ADDRESSES")]
    pub eip_pool: Vec<String>,
    /// The host interface qci puts bound EIPs on (without it, route the pool to this host)
    #[arg(long, value_name = "IFACE")]
    pub eip_interface: Option<String>,
    /// A block for networks' uplinks and published groups' aliases, used inside this host
    /// only [default: a /20 of 100.64.0.0/10 that no route of the host uses, picked at the
    /// first start and kept in DATA_DIR/transit]
    #[arg(long, value_name = "CIDR")]
    pub transit_cidr: Option<String>,
    /// Treat this network namespace (a file such as /run/netns/NAME) as the host's network:
    /// uplinks, EIPs and NAT rules go there
    #[arg(long, value_name = "PATH")]
    pub network_host_ns: Option<PathBuf>,
    /// Seconds the basic network's router is kept once no group is in it
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub basic_network_linger: f64,
    /// How often containers' resource use is read, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub metrics_interval: f64,
    /// A host name (beyond IP addresses and localhost) clients may reach the API by; requests
    /// naming any other Host are refused (against DNS rebinding)
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// Serve the API over TLS with this certificate chain (PEM); needs --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow listening on a non-loopback address without TLS (keys then cross the network in
    /// clear text)
    #[arg(long)]
    pub insecure_listen: bool,
    /// Days the audit trail is kept
    #[arg(long, value_name = "DAYS", default_value_t = 90.0)]
    pub audit_retention: f64,
    /// The seccomp profile (containers' JSON format, e.g. /usr/share/containers/seccomp.json)
    /// for containers whose seccomp_profile is RuntimeDefault; default: the one qci ships
    #[arg(long, value_name = "FILE")]
    pub seccomp_profile: Option<PathBuf>,
    /// Let containers ask for seccomp_profile: Unconfined
    #[arg(long)]
    pub allow_unconfined_seccomp: bool,
    /// A capability containers may add beyond Docker's 14 defaults (repeatable), e.g. NET_ADMIN
    #[arg(long = "allowed-capability", value_name = "NAME")]
    pub allowed_capabilities: Vec<String>,
    /// The runtime of groups whose spec names none: runc or gvisor
    #[arg(long, value_name = "RUNTIME", default_value = "runc")]
    pub default_runtime: qci_spec::ContainerRuntime,
    /// A runtime groups may ask for (repeatable); without it, every runtime this machine can
    /// run. `--allowed-runtime gvisor` alone keeps every tenant's groups in gVisor sandboxes
    #[arg(long = "allowed-runtime", value_name = "RUNTIME")]
    pub allowed_runtimes: Vec<qci_spec::ContainerRuntime>,
    /// Join a cluster of qci nodes whose state is in etcd at these client URLs
    /// (comma-separated, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379)
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// This node's name in the cluster, a DNS label (default: the machine's hostname)
    #[arg(long, value_name = "NAME", requires = "etcd")]
    pub node_name: Option<String>,
    /// Where the other nodes reach this one's API, HOST:PORT (default: --listen)
    #[arg(long, value_name = "HOST:PORT", requires = "etcd")]
    pub node_address: Option<String>,
    /// Cores this node offers groups: their normalised sizes together may not exceed it (a
    /// create or growth past it is refused). Without it the machine's count is reported and
    /// nothing is refused
    #[arg(long, value_name = "CORES")]
    pub node_cpu: Option<f64>,
    /// Memory this node offers groups, e.g. 16Gi, held as --node-cpu is (default: the
    /// machine's, reported, not enforced)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub node_memory: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    qci_spec::parse_memory_bytes(s)
}

#[derive(Args)]
pub struct CreateArgs {
    /// The spec file (YAML or JSON), or a Kubernetes manifest (a v1 Pod, with the ConfigMaps,
    /// Secrets and PersistentVolumeClaims it uses); `-` reads standard input
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Wait until the group is Running or has ended; fail with the reason if it failed
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// For a Kubernetes manifest: leave out, with a warning each, the fields qci does not
    /// support (without it they are errors)
    #[arg(long)]
    pub lenient: bool,
    /// Check everything a create checks (the spec, policy, disks, addresses, quotas, the
    /// name) and print the size and price it would have; create nothing
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    /// The whole objects as JSON
    Json,
    /// The whole objects as YAML
    Yaml,
    /// One name per line (a group's, an image's reference, an EIP's address), for scripts
    Name,
    /// The table with more columns
    Wide,
    /// A group as a Kubernetes manifest (its Pod, ConfigMaps and claims): `qci get` only
    K8s,
}

#[derive(Args)]
pub struct OutputArgs {
    /// Print whole objects, names alone, or a wider table, instead of the table
    #[arg(short = 'o', long = "output")]
    pub output: Option<Output>,
}

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Remove everything an instance made, as `podman system reset` does: every group and
    /// its containers, disks, images, keys and the database, the networks, rules and
    /// addresses on the host, mounts and cgroups. Asks first unless --force
    Reset(ResetArgs),
}

#[derive(Args)]
pub struct ResetArgs {
    /// The instance's data dir
    #[arg(long, default_value = "/var/lib/qci", env = "QCI_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The network namespace the instance treated as the host's (its --network-host-ns)
    #[arg(long, value_name = "PATH")]
    pub network_host_ns: Option<PathBuf>,
    /// The interface the instance put EIPs on (its --eip-interface)
    #[arg(long, value_name = "IFACE")]
    pub eip_interface: Option<String>,
    /// Do not ask
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Args)]
pub struct LsArgs {
    /// Print whole objects, names alone, or a wider table, instead of the table
    #[arg(short = 'o', long = "output")]
    pub output: Option<Output>,
    /// Keep watching: after the table, a line for each group that changes or goes
    #[arg(short = 'w', long, conflicts_with = "output")]
    pub watch: bool,
}

#[derive(Args)]
pub struct GroupArg {
    /// Group id or name
    pub group: String,
}

#[derive(Args)]
pub struct GetArgs {
    /// Its id or name
    #[arg(value_name = "ID_OR_NAME")]
    pub group: String,
    /// Print the whole object instead of a summary
    #[arg(short = 'o', long = "output")]
    pub output: Option<Output>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Group id or name
    pub group: String,
    /// The container (default: all of them, each line prefixed with its name)
    #[arg(short = 'c', long = "container")]
    pub container: Option<String>,
    /// Only the last N lines
    #[arg(long)]
    pub tail: Option<usize>,
    /// Keep printing new lines until the containers end
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Prefix each line with its time
    #[arg(long)]
    pub timestamps: bool,
    /// The output of the instance before the last restart
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only lines since then: an age (10m, 30s, 2h) or an RFC 3339 time
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many bytes
    #[arg(long)]
    pub limit_bytes: Option<usize>,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// Group id or name
    pub group: String,
    /// Wait until everything is gone
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Pull an image into the store (a progress bar per layer on a terminal)
    Pull(ImagePullArgs),
    /// List the images in the store
    Ls(OutputArgs),
    /// Forget an image (its layers go once nothing uses them)
    Rm {
        /// The image reference, as pulled
        image: String,
    },
    /// Remove now the blobs and layers nothing uses (this also runs every minute)
    Prune,
    /// Load the images of an archive: an OCI layout or docker-archive tar (`docker save`,
    /// `podman save`, `skopeo copy … oci-archive:`); digests are checked
    Load {
        /// The archive [default: standard input]
        #[arg(short = 'i', long = "input", value_name = "FILE")]
        input: Option<PathBuf>,
        /// Store the image under this name (the archive must hold one image)
        #[arg(long)]
        tag: Option<String>,
    },
    /// Write an image of the store as an OCI layout tar
    Save {
        /// The image reference
        image: String,
        /// Where [default: standard output, unless it is a terminal]
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Give an image of the store a second name
    Tag {
        /// An image in the store
        source: String,
        /// Its new name
        target: String,
    },
}

#[derive(Args)]
pub struct ImagePullArgs {
    /// The image reference
    pub image: String,
    /// Log in to the image's registry as this user (the password is read from standard input)
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password from standard input
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Create a cache of IMAGE... (prints its id)
    Create(CacheCreateArgs),
    /// List image caches
    Ls(OutputArgs),
    /// Show a cache: its images, digests and total size
    Get(GetArgs),
    /// Delete a cache
    #[command(alias = "delete")]
    Rm {
        /// Cache id or name
        cache: String,
    },
}

#[derive(Subcommand)]
pub enum VpcCommand {
    /// Create a VPC (prints its id)
    Create {
        #[arg(long)]
        name: String,
        /// Its IPv4 block, /16 to /28, e.g. 10.100.0.0/24
        #[arg(long)]
        cidr: String,
        /// A firewall for every group of the VPC
        #[arg(long)]
        firewall: Option<String>,
    },
    /// Set or clear the firewall that guards every group of a VPC
    Update {
        vpc: String,
        /// A firewall's name or id
        #[arg(
            long,
            conflicts_with = "no_firewall",
            required_unless_present = "no_firewall"
        )]
        firewall: Option<String>,
        /// Remove the VPC's firewall
        #[arg(long)]
        no_firewall: bool,
    },
    /// List VPCs
    Ls(OutputArgs),
    /// Show a VPC
    Get(GetArgs),
    /// Delete a VPC (refused while groups use it)
    #[command(alias = "delete")]
    Rm { vpc: String },
}

#[derive(Subcommand)]
pub enum EipCommand {
    /// Take an address from the pool (prints it)
    Create {
        #[arg(long)]
        name: Option<String>,
        /// A particular address of the pool
        #[arg(long)]
        address: Option<String>,
    },
    /// List EIPs, with what each is bound to
    Ls(OutputArgs),
    /// Show an EIP
    Get(GetArgs),
    /// Bind an EIP to a VPC: its groups reach the outside through it
    Bind {
        eip: String,
        #[arg(long)]
        vpc: String,
    },
    /// Unbind an EIP from its VPC
    Unbind { eip: String },
    /// Release an EIP (refused while bound)
    #[command(alias = "delete")]
    Rm { eip: String },
}

#[derive(Subcommand)]
pub enum FirewallCommand {
    /// Create a firewall (prints its id)
    Create {
        #[arg(long)]
        name: String,
        /// A rule: "ACTION PROTOCOL [PORTS] (from|to) CIDR [priority N]", e.g.
        /// "accept tcp 8080 from 0.0.0.0/0" (repeatable)
        #[arg(long = "rule")]
        rules: Vec<String>,
    },
    /// Replace a firewall's rules (running groups follow within seconds)
    Update {
        firewall: String,
        #[arg(long = "rule")]
        rules: Vec<String>,
    },
    /// List firewalls
    Ls(OutputArgs),
    /// Show a firewall and its rules
    Get(GetArgs),
    /// Delete a firewall (refused while used)
    #[command(alias = "delete")]
    Rm { firewall: String },
}

#[derive(Subcommand)]
pub enum DiskCommand {
    /// Create a disk (prints its id)
    Create {
        /// The disk's name
        #[arg(long)]
        name: String,
        /// Its size, e.g. 10Gi
        #[arg(long)]
        size: String,
        /// Its type (standard or performance by default; the server's table decides)
        #[arg(long = "type", default_value = "standard")]
        disk_type: String,
    },
    /// List disks, with the group each is attached to
    Ls(OutputArgs),
    /// Show a disk
    Get(GetArgs),
    /// Grow a disk (online if a group uses it)
    Resize {
        /// Disk id or name
        disk: String,
        /// The new size, larger than the current one
        #[arg(long)]
        size: String,
    },
    /// Delete a disk and its data (refused while a group uses it)
    #[command(alias = "delete")]
    Rm {
        /// Disk id or name
        disk: String,
    },
}

#[derive(Args)]
pub struct LoginArgs {
    /// Read the API key from standard input (it never belongs on a command line)
    /// (the context is named by --context, by default the server's host and port)
    #[arg(long, required = true)]
    pub token_stdin: bool,
}

#[derive(Subcommand)]
pub enum ContextCommand {
    /// List the contexts; `*` marks the current one
    Ls,
    /// Make a context the current one
    Use {
        /// The context's name
        name: String,
    },
    /// Forget a context (and its key)
    #[command(alias = "delete")]
    Rm {
        /// The context's name
        name: String,
    },
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant
    Create {
        /// The tenant's name (a DNS label)
        name: String,
        /// Limits, e.g. groups=10,cores=8,memory=16Gi,disk=100Gi,eips=2,vpcs=2,exec_sessions=10
        #[arg(long, value_name = "KEY=VALUE,...")]
        quota: Vec<String>,
    },
    /// Change some of a tenant's limits (`KEY=unlimited` removes one)
    Update {
        /// The tenant's name
        name: String,
        #[arg(long, value_name = "KEY=VALUE,...", required = true)]
        quota: Vec<String>,
    },
    /// List tenants with their use against their quotas
    Ls(OutputArgs),
    /// Show a tenant's use against its quota [default: the key's own tenant]
    Get {
        name: Option<String>,
        #[arg(short = 'o', long = "output")]
        output: Option<Output>,
    },
    /// Remove a tenant that owns nothing, with its keys
    #[command(alias = "delete")]
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make a key for a tenant (--tenant); prints the key alone on its last line, once
    Create {
        /// admin, member, viewer or metrics
        #[arg(long)]
        role: qci_spec::Role,
        /// Its name (a DNS label) [default: its id]
        #[arg(long)]
        name: Option<String>,
        /// It stops working after this long: 30d, 12h, 90m [default: never]
        #[arg(long, value_name = "AGE")]
        expires: Option<String>,
    },
    /// List keys (of --tenant, or --all-tenants), revoked ones marked
    Ls(OutputArgs),
    /// Revoke a key: it stops working at once
    #[command(alias = "revoke", alias = "delete")]
    Rm {
        /// The key's id (k-…) or name
        key: String,
    },
}

#[derive(Args)]
pub struct AuditArgs {
    /// From when: an age (1h, 7d) or an RFC 3339 time [default: the last day]
    #[arg(long)]
    pub since: Option<String>,
    #[arg(short = 'o', long = "output")]
    pub output: Option<Output>,
}

#[derive(Args)]
pub struct CacheCreateArgs {
    /// The cache's name
    #[arg(long)]
    pub name: String,
    /// Images to cache
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Wait until the cache is Ready; fail with the reason if it fails
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Log in as this user to the registry of the images (the password is read from standard input)
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password from standard input
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

#[derive(Args)]
pub struct UsageArgs {
    /// Start of the window (RFC 3339)
    #[arg(long)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// End of the window (RFC 3339; default now)
    #[arg(long)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Print JSON or YAML
    #[arg(short = 'o', long = "output")]
    pub output: Option<Output>,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Group id or name
    pub group: String,
    /// The new spec (YAML or JSON, or a Kubernetes manifest); `-` reads standard input
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// For a Kubernetes manifest: leave out, with a warning each, the fields qci does not
    /// support
    #[arg(long)]
    pub lenient: bool,
    /// Check everything an update checks and print which containers it would recreate and
    /// which would keep running; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args)]
pub struct EventsArgs {
    /// Group id or name (default: every group)
    pub group: Option<String>,
    /// Keep watching: print events as they happen
    #[arg(short = 'w', long, requires = "group")]
    pub watch: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// The group's name [default: the image's name and a random suffix]
    #[arg(long)]
    pub name: Option<String>,
    /// Print the group's id once it is created and return, leaving it running
    #[arg(short = 'd', long, conflicts_with = "rm")]
    pub detach: bool,
    /// Delete the group once its container has ended (or on Ctrl-C)
    #[arg(long)]
    pub rm: bool,
    /// An environment variable (repeatable); `-e NAME` alone takes NAME's value from here
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// A port the container listens on, published on the group's EIP if it has one
    /// (repeatable); `/udp` for UDP
    #[arg(short = 'p', long = "publish", value_name = "PORT[/udp]")]
    pub ports: Vec<String>,
    /// CPU cores, e.g. 0.5, 2 or 500m
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory, e.g. 256Mi or 1Gi
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Mount a disk (its name or id), or a directory of it with DISK/SUB, at PATH (repeatable)
    #[arg(short = 'v', long = "volume", value_name = "DISK[/SUB]:PATH[:ro]")]
    pub volumes: Vec<String>,
    /// An EIP for the group: `auto` (one from the pool) or an EIP's address or id
    #[arg(long)]
    pub eip: Option<String>,
    /// Run in this VPC instead of the basic network
    #[arg(long)]
    pub vpc: Option<String>,
    /// Always, OnFailure or Never (Docker's no, on-failure, always and unless-stopped too)
    #[arg(long, default_value = "Never")]
    pub restart: String,
    /// What the container runs on: runc or gvisor (Docker's runsc too); default: the server's
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<String>,
    /// Replace the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Working directory in the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Keep the container's standard input open and pass this one's to it
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Give the container a terminal, this one (raw mode, window size passed on)
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// The image
    pub image: String,
    /// The command (the image's CMD is replaced) and its arguments, passed on exactly
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Group id or name
    pub group: String,
    /// The container (may be left out when the group has one)
    #[arg(short = 'c', long = "container")]
    pub container: Option<String>,
    /// Pass standard input to the command
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal (raw mode here, window size passed on)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments (after `--`), passed on exactly
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}
