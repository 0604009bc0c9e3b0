//! Writes a large, valid policy directory for benchmarks: a catalog of resources across kinds,
//! teams, environments and a hierarchy of collections, and workflows that select them by exact
//! name, glob, kind and labels, some with owners steps. The same seed gives the same files.
//!
//! ```sh
//! cargo run --release -p jitgate-policy --example generate_catalog -- OUT_DIR \
//!     [--resources 10000] [--workflows 500] [--seed 1] [--variant]
//! ```
//!
//! `--variant` writes the same catalog and workflows with some changes on top, so that two
//! generated directories can be compared with `jitgate policy diff`: about 1% more resources,
//! and about 0.5% of the resources moved from one environment to another (which changes which
//! workflow governs them).
//!
//! The directory has the shape of examples/quickstart: `directory.toml`, `workflows.toml`,
//! `resources.toml` (the collections) and `resources/KIND.toml`. No two selectors of equal
//! specificity meet on a (resource, action), every selector selects something, and the result
//! is loaded with `Policy::load` before the generator reports success. The principals' tokens
//! are `gen-token-NAME`: generated data for benchmarks, never for anything real.

// A generator that cannot write its files should stop loudly.
#![allow(clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The kinds of resource, the prefix of their names and the actions a workflow gives on them.
const KINDS: [(&str, &str, &[&str]); 8] = [
    ("postgres", "pg", &["read", "write"]),
    ("mysql", "my", &["read", "write"]),
    ("ssh", "ssh", &["login"]),
    ("http", "web", &["access"]),
    ("mcp", "mcp", &["call"]),
    ("github-environment", "gh", &["deploy"]),
    ("kubernetes", "k8s", &["read", "admin"]),
    ("s3", "s3", &["read", "write"]),
];

const TEAMS: [&str; 40] = [
    "payments",
    "billing",
    "ledger",
    "checkout",
    "search",
    "catalog",
    "orders",
    "shipping",
    "inventory",
    "pricing",
    "identity",
    "accounts",
    "growth",
    "ads",
    "analytics",
    "data",
    "ml",
    "platform",
    "infra",
    "network",
    "storage",
    "observability",
    "security",
    "mobile",
    "web",
    "api",
    "partners",
    "support",
    "crm",
    "marketing",
    "content",
    "media",
    "maps",
    "fraud",
    "risk",
    "tax",
    "payroll",
    "hr",
    "legal",
    "finance",
];

/// Teams whose production collections sit under the `pci` collection.
const PCI_TEAMS: [&str; 3] = ["payments", "billing", "ledger"];

const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const REGIONS: [&str; 3] = ["eu", "us", "ap"];

/// splitmix64: a small deterministic generator; the same seed gives the same directory.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Clone)]
struct Res {
    name: String,
    kind: usize,
    team: usize,
    env: usize,
    region: usize,
    tier: u8,
    /// A resource parent (an `http` app above an `mcp` tool), else the team's collection.
    parent_resource: Option<String>,
}

impl Res {
    fn combo(&self) -> (usize, usize, usize) {
        (self.kind, self.team, self.env)
    }

    fn parent(&self) -> String {
        self.parent_resource
            .clone()
            .unwrap_or_else(|| format!("{}:{}", TEAMS[self.team], ENVS[self.env]))
    }
}

/// What to generate (the command line's options).
pub struct Options {
    pub out: PathBuf,
    pub resources: usize,
    pub workflows: usize,
    pub seed: u64,
    pub variant: bool,
}

fn usage() -> ! {
    eprintln!("usage: generate_catalog OUT_DIR [--resources 10000] [--workflows 500] [--seed N] [--variant]");
    std::process::exit(2)
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    let mut o = Options {
        out: PathBuf::new(),
        resources: 10_000,
        workflows: 500,
        seed: 1,
        variant: false,
    };
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> u64 {
            match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => n,
                None => {
                    eprintln!("{name} needs a number");
                    usage()
                }
            }
        };
        match arg.as_str() {
            "--resources" => o.resources = number("--resources") as usize,
            "--workflows" => o.workflows = number("--workflows") as usize,
            "--seed" => o.seed = number("--seed"),
            "--variant" => o.variant = true,
            "-h" | "--help" => usage(),
            _ if arg.starts_with('-') => usage(),
            _ if out.is_none() => out = Some(PathBuf::from(arg)),
            _ => usage(),
        }
    }
    match out {
        Some(path) => o.out = path,
        None => usage(),
    }
    if o.resources == 0 || o.workflows == 0 {
        eprintln!("--resources and --workflows must be at least 1");
        usage()
    }
    o
}

fn make_resource(rng: &mut Rng, n: usize, by_team_env_http: &BTreeMap<(usize, usize), String>) -> Res {
    // Databases and clusters are the bulk, as in most organisations.
    let kind = match rng.below(100) {
        0..=24 => 0,
        25..=34 => 1,
        35..=49 => 2,
        50..=64 => 3,
        65..=74 => 4,
        75..=79 => 5,
        80..=89 => 6,
        _ => 7,
    };
    let team = rng.below(TEAMS.len());
    let env = match rng.below(10) {
        0..=3 => 0,
        4..=6 => 1,
        _ => 2,
    };
    let name = format!("{}-{}-{n:05}", KINDS[kind].1, TEAMS[team]);
    // An MCP tool belongs to its team's web app in that environment, when there is one.
    let parent_resource = if KINDS[kind].0 == "mcp" {
        by_team_env_http.get(&(team, env)).cloned()
    } else {
        None
    };
    Res {
        name,
        kind,
        team,
        env,
        region: rng.below(REGIONS.len()),
        tier: 1 + rng.below(3) as u8,
        parent_resource,
    }
}

fn catalog(o: &Options, rng: &mut Rng) -> Vec<Res> {
    let mut http: BTreeMap<(usize, usize), String> = BTreeMap::new();
    let mut out = Vec::with_capacity(o.resources);
    for n in 0..o.resources {
        let r = make_resource(rng, n, &http);
        if KINDS[r.kind].0 == "http" {
            http.entry((r.team, r.env)).or_insert_with(|| r.name.clone());
        }
        out.push(r);
    }
    out
}

/// The variant's changes, drawn from their own stream so the base stays the same.
fn vary(o: &Options, resources: &mut Vec<Res>, protected: &BTreeSet<String>) {
    let mut rng = Rng(o.seed ^ 0x5eed_0f0a_7a0e);
    let mut counts: BTreeMap<(usize, usize, usize), usize> = BTreeMap::new();
    for r in resources.iter() {
        *counts.entry(r.combo()).or_default() += 1;
    }
    // Move about 0.5% between environments, never emptying a combination a selector names,
    // never moving into one that has no workflow (it must exist already), and never moving a
    // resource that another one names as its parent or that an exact workflow names.
    let parents: BTreeSet<String> = resources.iter().filter_map(|r| r.parent_resource.clone()).collect();
    let moves = (resources.len() / 200).max(1);
    let mut moved = 0;
    let mut tries = 0;
    while moved < moves && tries < resources.len() * 4 {
        tries += 1;
        let i = rng.below(resources.len());
        let r = &resources[i];
        if parents.contains(&r.name) || protected.contains(&r.name) || r.parent_resource.is_some() {
            continue;
        }
        let to = (r.env + 1 + rng.below(ENVS.len() - 1)) % ENVS.len();
        let from = r.combo();
        let target = (r.kind, r.team, to);
        if counts.get(&from).copied().unwrap_or(0) < 3 || counts.get(&target).copied().unwrap_or(0) == 0 {
            continue;
        }
        *counts.entry(from).or_default() -= 1;
        *counts.entry(target).or_default() += 1;
        resources[i].env = to;
        moved += 1;
    }
    // Add about 1%, in combinations that exist.
    let added = (resources.len() / 100).max(1);
    let base = resources.len();
    let mut n = 0;
    while n < added {
        let http = BTreeMap::new();
        let r = make_resource(&mut rng, base + n + 1_000_000, &http);
        if counts.get(&r.combo()).copied().unwrap_or(0) == 0 {
            continue;
        }
        *counts.entry(r.combo()).or_default() += 1;
        resources.push(r);
        n += 1;
    }
}

/// One `[[workflow]]` block.
struct Wf {
    selector: String,
    actions: Vec<&'static str>,
    description: String,
    requesters: Vec<String>,
    rules: String,
}

/// The rules of a workflow on a resource of `kind` in `env`: production needs review (by a
/// group or by the resources' owners), the rest is automatic. A reviewed MCP tool call is
/// action-bound, as `policy check` requires.
fn rules(rng: &mut Rng, env: usize, writes: bool, kind: usize) -> String {
    let mut text = String::new();
    if env == 0 {
        if rng.chance(40) {
            text.push_str("steps = [{ owners = true }]\n");
        } else if writes && rng.chance(50) {
            text.push_str("steps = [{ group = \"sre\", approvals = 2 }]\n");
        } else {
            text.push_str("steps = [{ group = \"sre\", approvals = 1 }]\n");
        }
        text.push_str("reason_required = true\nmax_duration = \"1h\"\n");
        if writes {
            text.push_str("ticket_pattern = \"\\\\b[A-Z][A-Z0-9]+-[0-9]+\\\\b\"\n");
        }
        if KINDS[kind].0 == jitgate_policy::MCP_KIND {
            text.push_str("action_bound = true\n");
        }
    } else {
        text.push_str("auto_approve = true\nmax_duration = \"8h\"\n");
        if rng.chance(30) {
            text.push_str("extension = { max_times = 2 }\n");
        }
    }
    text
}

fn workflows(o: &Options, rng: &mut Rng, resources: &[Res]) -> Vec<Wf> {
    let mut combos: BTreeMap<(usize, usize, usize), Vec<&Res>> = BTreeMap::new();
    for r in resources {
        combos.entry(r.combo()).or_default().push(r);
    }
    let kinds_present: BTreeSet<usize> = resources.iter().map(|r| r.kind).collect();
    let writes = |kind: usize| {
        KINDS[kind]
            .2
            .iter()
            .any(|a| *a != "read" && *a != "login" && *a != "access")
    };

    // Labels and kind: a partition, so no two meet. Per kind one granularity: the kind alone,
    // per environment, or per team and environment.
    let mut label_wfs = Vec::new();
    for &kind in &kinds_present {
        let (kname, _, actions) = KINDS[kind];
        match kind % 3 {
            // Per team and environment: the bulk.
            0 | 1 => {
                for &(_, team, env) in combos.keys().filter(|(k, _, _)| *k == kind) {
                    label_wfs.push(Wf {
                        selector: format!(
                            "resources = {{ kind = \"{kname}\", labels = {{ team = \"{}\", env = \"{}\" }} }}",
                            TEAMS[team], ENVS[env]
                        ),
                        actions: actions.to_vec(),
                        description: format!("{kname} of {} in {}", TEAMS[team], ENVS[env]),
                        requesters: vec![format!("team-{}", TEAMS[team]), "sre".into()],
                        rules: rules(rng, env, writes(kind), kind),
                    });
                }
            }
            // Per environment, open to every developer.
            _ => {
                for (env, env_name) in ENVS.iter().enumerate() {
                    if !combos.keys().any(|(k, _, e)| *k == kind && *e == env) {
                        continue;
                    }
                    label_wfs.push(Wf {
                        selector: format!("resources = {{ kind = \"{kname}\", labels = {{ env = \"{env_name}\" }} }}"),
                        actions: actions.to_vec(),
                        description: format!("every {kname} in {env_name}"),
                        requesters: vec!["dev".into(), "sre".into()],
                        rules: rules(rng, env, writes(kind), kind),
                    });
                }
            }
        }
    }

    // Globs: one per (kind, team), some narrowed to one environment by label.
    let mut glob_wfs = Vec::new();
    let mut teams_of_kind: BTreeMap<(usize, usize), BTreeSet<usize>> = BTreeMap::new();
    for &(kind, team, env) in combos.keys() {
        teams_of_kind.entry((kind, team)).or_default().insert(env);
    }
    for (&(kind, team), envs) in &teams_of_kind {
        let (kname, prefix, actions) = KINDS[kind];
        let glob = format!("{prefix}-{}-*", TEAMS[team]);
        let (selector, env) = if rng.chance(50) {
            let env = *envs.iter().next().unwrap_or(&0);
            (
                format!(
                    "resources = {{ names = [\"{glob}\"], labels = {{ env = \"{}\" }} }}",
                    ENVS[env]
                ),
                env,
            )
        } else {
            (format!("resources = {{ names = [\"{glob}\"] }}"), 0)
        };
        glob_wfs.push(Wf {
            selector,
            // A glob on one team's resources gives its admin action only.
            actions: vec![actions[actions.len() - 1]],
            description: format!("{kname} of {} by name", TEAMS[team]),
            requesters: vec![format!("team-{}", TEAMS[team])],
            rules: rules(rng, env, writes(kind), kind),
        });
    }

    // Exact names: any resource, each at most once.
    let mut exact_wfs = Vec::new();
    let mut order: Vec<usize> = (0..resources.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    for &i in order.iter().take(o.workflows) {
        let r = &resources[i];
        let (kname, _, actions) = KINDS[r.kind];
        exact_wfs.push(Wf {
            selector: format!("resource = \"{}\"", r.name),
            actions: actions.to_vec(),
            description: format!("the {kname} {}", r.name),
            requesters: vec!["dev".into()],
            rules: rules(rng, r.env, writes(r.kind), r.kind),
        });
    }

    // The mix: up to 60% by labels and kind, up to 20% by glob, exact names for the rest.
    let want_labels = (o.workflows * 3 / 5).min(label_wfs.len());
    let want_globs = (o.workflows / 5).min(glob_wfs.len());
    let pick = |rng: &mut Rng, mut list: Vec<Wf>, n: usize| -> Vec<Wf> {
        for i in (1..list.len()).rev() {
            list.swap(i, rng.below(i + 1));
        }
        list.truncate(n);
        list
    };
    let mut out = pick(rng, label_wfs, want_labels);
    out.extend(pick(rng, glob_wfs, want_globs));
    let rest = o.workflows.saturating_sub(out.len());
    out.extend(exact_wfs.into_iter().take(rest));
    out
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn main() {
    let o = options();
    let blocks = match generate(&o) {
        Ok(blocks) => blocks,
        Err(e) => panic!("cannot write the directory: {e}"),
    };
    let started = std::time::Instant::now();
    match jitgate_policy::Policy::load(&o.out) {
        Ok(p) => eprintln!(
            "wrote {}: {} resources, {} (resource, action) pairs under {} workflow blocks; loads in {:?}",
            o.out.display(),
            p.rules().catalog().resources().count(),
            p.workflows().count(),
            blocks,
            started.elapsed()
        ),
        Err(errors) => {
            for e in errors.iter().take(20) {
                eprintln!("{e}");
            }
            panic!("the generated directory is invalid ({} problems)", errors.len());
        }
    }
}

/// Write the directory `o` describes; returns how many workflow blocks it holds (tests
/// include this file to call it).
pub fn generate(o: &Options) -> std::io::Result<usize> {
    let mut rng = Rng(o.seed);
    let mut resources = catalog(o, &mut rng);
    // The workflows come from the base catalog, so a variant keeps them.
    let wfs = workflows(o, &mut rng, &resources);
    if o.variant {
        let protected: BTreeSet<String> = wfs
            .iter()
            .filter_map(|w| w.selector.strip_prefix("resource = \""))
            .map(|s| s.trim_end_matches('"').to_string())
            .collect();
        vary(o, &mut resources, &protected);
    }
    std::fs::create_dir_all(o.out.join("resources"))?;

    // Principals: three members per team, and the sre, dev and security groups.
    let mut directory = String::from(
        "# Generated by `cargo run -p jitgate-policy --example generate_catalog`. INSECURE demo tokens\n\
         # (gen-token-NAME): generated data for benchmarks only.\n\n",
    );
    let mut principal = |name: &str, groups: &[String]| {
        let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
        let _ = writeln!(
            directory,
            "[[principal]]\nname = \"{name}\"\ngroups = [{}]\ntoken = \"gen-token-{name}\"\n",
            groups.join(", ")
        );
    };
    principal("alice", &["dev".into(), "team-payments".into()]);
    principal("bob", &["sre".into()]);
    for team in TEAMS {
        for n in 1..=3 {
            principal(&format!("{team}-{n}"), &["dev".into(), format!("team-{team}")]);
        }
    }
    for n in 1..=4 {
        principal(&format!("sre-{n}"), &["sre".into()]);
    }
    let _ = writeln!(
        directory,
        "[[principal]]\nname = \"svc-api\"\nservice = true\ntoken = \"gen-token-svc-api\"\n"
    );
    write(&o.out.join("directory.toml"), &directory)?;

    // Collections: env:ENV at the top, pci under env:prod, TEAM:ENV under either.
    let mut collections = String::from(
        "# Generated: the collections resources name as parents. TEAM:ENV is under env:ENV, or under pci\n\
         # (itself under env:prod) for the teams that handle card data.\n\n",
    );
    for env in ENVS {
        let _ = writeln!(
            collections,
            "[[collection]]\nname = \"env:{env}\"\ndescription = \"Everything in {env}\"\n"
        );
    }
    let _ = writeln!(
        collections,
        "[[collection]]\nname = \"pci\"\nparent = \"env:prod\"\ndescription = \"Card data (PCI DSS scope)\"\n"
    );
    for team in TEAMS {
        for env in ENVS {
            let parent = if env == "prod" && PCI_TEAMS.contains(&team) {
                "pci".to_string()
            } else {
                format!("env:{env}")
            };
            let _ = writeln!(
                collections,
                "[[collection]]\nname = \"{team}:{env}\"\nparent = \"{parent}\"\n"
            );
        }
    }
    write(&o.out.join("resources.toml"), &collections)?;

    let mut files: BTreeMap<&str, String> = BTreeMap::new();
    for r in &resources {
        let (kname, _, _) = KINDS[r.kind];
        let text = files.entry(kname).or_default();
        let team = TEAMS[r.team];
        let mut labels = format!(
            "env = \"{}\", team = \"{team}\", region = \"{}\", tier = \"{}\"",
            ENVS[r.env], REGIONS[r.region], r.tier
        );
        if PCI_TEAMS.contains(&team) {
            labels.push_str(", compliance = \"pci\"");
        }
        let mut owners = vec![format!("\"team-{team}\"")];
        if r.env == 0 {
            owners.push("\"sre\"".into());
        }
        let _ = writeln!(
            text,
            "[[resource]]\nname = \"{}\"\nkind = \"{kname}\"\nlabels = {{ {labels} }}\nparent = \"{}\"\nowners = [{}]\ndescription = \"{kname} of {team} in {}\"",
            r.name,
            r.parent(),
            owners.join(", "),
            ENVS[r.env]
        );
        if kname == "postgres" {
            text.push_str("postgres = { roles = [\"app_readonly\"] }\n");
        }
        text.push('\n');
    }
    for (kind, text) in &files {
        write(&o.out.join("resources").join(format!("{kind}.toml")), text)?;
    }

    let mut workflows = String::from(
        "# Generated: workflows by exact name, glob, kind and labels.\n\n[defaults]\npending_ttl = \"1h\"\n\n",
    );
    for w in &wfs {
        let actions: Vec<String> = w.actions.iter().map(|a| format!("\"{a}\"")).collect();
        let requesters: Vec<String> = w.requesters.iter().map(|g| format!("\"{g}\"")).collect();
        let _ = writeln!(
            workflows,
            "[[workflow]]\n{}\nactions = [{}]\ndescription = \"{}\"\nrequesters = [{}]\n{}",
            w.selector,
            actions.join(", "),
            w.description,
            requesters.join(", "),
            w.rules
        );
    }
    write(&o.out.join("workflows.toml"), &workflows)?;
    Ok(wfs.len())
}
