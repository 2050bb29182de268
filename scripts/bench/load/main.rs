//! The load generator behind `scripts/bench.sh`: a std-only POP3 client that drives any server
//! by address, user and password, plus the helpers the script needs (mbox generation, the
//! reference measurements, the final table). Each scenario appends tab-separated result lines
//! `SERVER<TAB>FIGURE<TAB>VALUE` to a results file; `report` turns that file into the table.
//! Starting, stopping and resetting the servers is left to the script.
//!
//! `cargo bench --bench load -- HELP` lists the commands; cargo's own `--bench` flag is ignored.

mod mbox;
mod pop3;
mod procfs;
mod report;
mod scenarios;

use std::collections::HashMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::process::ExitCode;

/// Anything that stops a scenario or makes it count as failed.
#[derive(Debug)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure(e.to_string())
    }
}

/// Builds a `Failure` from format arguments.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { $crate::Failure(format!($($arg)*)) };
}

pub type Outcome<T> = Result<T, Failure>;

const USAGE: &str = "\
usage: load COMMAND [--option value ...]
  gen-mbox   --out FILE --messages N --octets N [--vary] [--tag T]
  sessions   --addr A --prefix P --users N --password W --clients N --seconds S --expect N
  retr-big   --addr A --user U --password W --expect N
  retr-small --addr A --user U --password W --expect N
  open-huge  --addr A --user U --password W --expect N --pid PID
  update     --addr A --user U --password W --mbox FILE --dele-many N
  memory     --pid PID --figure NAME
  idle       --addr A --pid PID --connections N
  idle-auth  --addr A --pid PID --prefix P --users N --password W --sessions N
  startup    --runs N --bin PATH -- ARG...   (the tool adds --listen 127.0.0.1:PORT)
  tcp        --megabytes N
  cat        --file FILE
  free-port  (prints a free port on 127.0.0.1)
  report     --results FILE [--peer NAME] [--smoke]
Scenarios also take --server NAME (the table column) and --results FILE (appended to).";

/// Parsed `--name value` options; a bare `--name` is a flag. Words after `--` are kept apart.
pub struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
    pub rest: Vec<String>,
}

impl Args {
    fn parse(words: &[String]) -> Outcome<Args> {
        let mut args = Args {
            values: HashMap::new(),
            flags: Vec::new(),
            rest: Vec::new(),
        };
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            if word == "--" {
                args.rest = words[i + 1..].to_vec();
                break;
            }
            let Some(name) = word.strip_prefix("--") else {
                return Err(fail!("unexpected argument {word:?}"));
            };
            match words.get(i + 1) {
                Some(value) if !value.starts_with("--") => {
                    args.values.insert(name.to_string(), value.clone());
                    i += 2;
                }
                _ => {
                    args.flags.push(name.to_string());
                    i += 1;
                }
            }
        }
        Ok(args)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    pub fn opt(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn text(&self, name: &str) -> Outcome<&str> {
        self.opt(name).ok_or_else(|| fail!("missing --{name}"))
    }

    pub fn number(&self, name: &str) -> Outcome<u64> {
        let text = self.text(name)?;
        text.replace('_', "")
            .parse()
            .map_err(|_| fail!("--{name}: not a number: {text:?}"))
    }

    pub fn number_or(&self, name: &str, default: u64) -> Outcome<u64> {
        match self.opt(name) {
            Some(_) => self.number(name),
            None => Ok(default),
        }
    }
}

/// Where a scenario's figures go: a line per figure, appended, and echoed to stderr.
pub struct Results {
    server: String,
    file: Option<std::fs::File>,
}

impl Results {
    fn open(args: &Args) -> Outcome<Results> {
        let file = match args.opt("results") {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| fail!("{path}: {e}"))?,
            ),
            None => None,
        };
        Ok(Results {
            server: args.opt("server").unwrap_or("pop3d").to_string(),
            file,
        })
    }

    pub fn record(&mut self, figure: &str, value: f64) {
        eprintln!("  {:<8} {figure:<22} {value}", self.server);
        if let Some(file) = &mut self.file {
            let line = format!("{}\t{figure}\t{value}\n", self.server);
            if let Err(e) = file.write_all(line.as_bytes()) {
                eprintln!("load: cannot append a result: {e}");
            }
        }
    }
}

fn main() -> ExitCode {
    // cargo bench passes --bench to a harness-less target; it means nothing here.
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match try_main(&words) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn try_main(words: &[String]) -> Outcome<()> {
    let Some((command, rest)) = words.split_first() else {
        eprintln!("{USAGE}");
        return Ok(());
    };
    let args = Args::parse(rest)?;
    if command == "report" {
        return report::run(&args);
    }
    if command == "gen-mbox" {
        return mbox::run(&args);
    }
    if command == "free-port" {
        println!("{}", scenarios::free_port()?);
        return Ok(());
    }
    let mut results = Results::open(&args)?;
    match command.as_str() {
        "sessions" => scenarios::sessions(&args, &mut results),
        "retr-big" => scenarios::retr_big(&args, &mut results),
        "retr-small" => scenarios::retr_small(&args, &mut results),
        "open-huge" => scenarios::open_huge(&args, &mut results),
        "update" => scenarios::update(&args, &mut results),
        "memory" => scenarios::memory(&args, &mut results),
        "idle" => scenarios::idle(&args, &mut results),
        "idle-auth" => scenarios::idle_auth(&args, &mut results),
        "startup" => scenarios::startup(&args, &mut results),
        "tcp" => scenarios::tcp(&args, &mut results),
        "cat" => scenarios::cat(&args, &mut results),
        _ => Err(fail!("unknown command {command:?}\n{USAGE}")),
    }
}
