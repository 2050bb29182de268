//! The benchmark tool behind `scripts/bench.sh`, run as
//! `cargo run --release --example bench -- COMMAND` (without a command it prints the usage).
//!
//! `bench load SCENARIO` is the load generator: a std-only POP3 client that drives any server
//! by address, user and password. `mbox` writes the maildrops the scenarios expect, `report`
//! prints the table. Each scenario appends tab-separated result lines
//! `SERVER<TAB>FIGURE<TAB>VALUE` to a results file; `report` turns that file into the table.
//! Starting, stopping and resetting the servers is left to the script.
//! `bench maildrop` times pop3d's maildrop engine itself, in process, on a large mbox;
//! `bench crypt` times one password check of the host's default crypt method.

mod args;
mod crypt;
mod maildrop;
mod mbox;
mod pop3;
mod procfs;
mod report;
mod scenarios;

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

pub use args::Args;

const USAGE: &str = "\
usage: bench COMMAND ...   (cargo run --release --example bench -- COMMAND ...)
  load SCENARIO [options]  drive a POP3 server by address, user and password; SCENARIO is
                           one of: sessions retr-big retr-small open-huge update memory idle
                           idle-auth startup tcp cat (`bench load SCENARIO --help`)
  mbox [options]           write an mbox of numbered messages for the scenarios
  report [options]         print the table of the scenarios' results
  maildrop generate PATH MB COUNT | stat PATH | delete PATH first|last
                           time pop3d's maildrop engine on a large mbox, in process
  crypt [CHECKS]           time one password check of the host's default crypt method
Every command takes --help.";

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
                eprintln!("bench: cannot append a result: {e}");
            }
        }
    }
}

/// What a run of the tool came to, when nothing failed.
enum Ran {
    Done,
    /// No command, or an unknown one: the usage goes to stderr and the status is 2.
    Usage,
}

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    match try_main(&words) {
        Ok(Ran::Done) => ExitCode::SUCCESS,
        Ok(Ran::Usage) => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn try_main(words: &[String]) -> Outcome<Ran> {
    let Some((command, rest)) = words.split_first() else {
        return Ok(Ran::Usage);
    };
    match command.as_str() {
        "load" => return load(rest),
        "mbox" => {
            if let Some(args) = Args::parse("bench mbox", &args::MBOX, &[], rest)? {
                mbox::run(&args)?;
            }
        }
        "report" => {
            if let Some(args) = Args::parse("bench report", &args::REPORT, &[], rest)? {
                report::run(&args)?;
            }
        }
        "maildrop" => return maildrop::run(rest).map(|()| Ran::Done),
        "crypt" => return crypt::run(rest).map(|()| Ran::Done),
        "-h" | "--help" => println!("{USAGE}"),
        _ => return Ok(Ran::Usage),
    }
    Ok(Ran::Done)
}

/// `bench load SCENARIO [options]`: one scenario against a server.
fn load(words: &[String]) -> Outcome<Ran> {
    let Some((name, rest)) = words.split_first() else {
        return Ok(Ran::Usage);
    };
    let Some(scenario) = args::SCENARIOS.iter().find(|s| s.name == name) else {
        return Ok(Ran::Usage);
    };
    let usage = format!("bench load {name}");
    let Some(args) = Args::parse(&usage, scenario, args::SCENARIO_COMMON, rest)? else {
        return Ok(Ran::Done);
    };
    let mut results = Results::open(&args)?;
    match scenario.name {
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
        _ => unreachable!("every name in args::SCENARIOS has its function above"),
    }?;
    Ok(Ran::Done)
}
