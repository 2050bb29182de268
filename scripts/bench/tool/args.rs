//! The options of each subcommand, declared once in a table, parsed with getopts (so an
//! unknown option or a missing value is an error with the subcommand's usage), and handed to
//! the subcommands as `Args`: `--name value` options by name, flags, and the free words.

use std::collections::HashMap;

use getopts::Options;

use crate::{fail, Outcome};

/// One option of a subcommand: `--name HINT` takes a value, a hint of "" makes it a flag.
pub struct Opt {
    pub name: &'static str,
    pub hint: &'static str,
    pub about: &'static str,
}

const fn value(name: &'static str, hint: &'static str, about: &'static str) -> Opt {
    Opt { name, hint, about }
}

const fn flag(name: &'static str, about: &'static str) -> Opt {
    Opt {
        name,
        hint: "",
        about,
    }
}

const ADDR: Opt = value("addr", "HOST:PORT", "the POP3 server");
const PID: Opt = value("pid", "PID", "the server's pid, for its CPU and memory");
const USER: Opt = value("user", "NAME", "the user to log in as");
const PASSWORD: Opt = value("password", "WORD", "the users' password");
const PREFIX: Opt = value("prefix", "P", "user names are P0, P1, ...");
const USERS: Opt = value("users", "N", "how many users P0.. there are");
const EXPECT: Opt = value("expect", "N", "messages each maildrop must hold");
const TAG: Opt = value(
    "tag",
    "T",
    "the Message-ID tag of the generated mbox (bench)",
);
const SERVER: Opt = value("server", "NAME", "the table column (pop3d)");
const RESULTS: Opt = value("results", "FILE", "append the figures to FILE");

/// A subcommand of `bench load`, or one of the other subcommands, with its options.
pub struct Command {
    pub name: &'static str,
    pub about: &'static str,
    pub options: &'static [Opt],
    /// Whether free words are allowed (after `--`, passed on to a program).
    pub free: bool,
}

/// The scenarios of `bench load`; each also takes --server and --results.
pub const SCENARIOS: &[Command] = &[
    Command {
        name: "sessions",
        about: "clients loop connect, USER, PASS, STAT, QUIT",
        options: &[
            ADDR,
            PREFIX,
            USERS,
            PASSWORD,
            value("clients", "N", "concurrent clients"),
            value("seconds", "S", "how long"),
            EXPECT,
            PID,
        ],
        free: false,
    },
    Command {
        name: "retr-big",
        about: "RETR of every message, one after the other",
        options: &[ADDR, USER, PASSWORD, EXPECT, PID],
        free: false,
    },
    Command {
        name: "retr-small",
        about: "RETR of every message, pipelined",
        options: &[ADDR, USER, PASSWORD, EXPECT, PID],
        free: false,
    },
    Command {
        name: "open-huge",
        about: "a first and a later session on a huge mbox, with the server's memory",
        options: &[ADDR, USER, PASSWORD, EXPECT, PID],
        free: false,
    },
    Command {
        name: "update",
        about: "DELE first, last, then many + QUIT; the mbox checked after each",
        options: &[
            ADDR,
            USER,
            PASSWORD,
            value("mbox", "FILE", "the user's mbox, checked after each UPDATE"),
            value("dele-many", "N", "messages deleted in the last session"),
            TAG,
        ],
        free: false,
    },
    Command {
        name: "memory",
        about: "the server's memory now",
        options: &[PID, value("figure", "NAME", "the figure's name")],
        free: false,
    },
    Command {
        name: "idle",
        about: "connections held at the greeting",
        options: &[ADDR, PID, value("connections", "N", "connections to hold")],
        free: false,
    },
    Command {
        name: "idle-auth",
        about: "logged-in sessions held",
        options: &[
            ADDR,
            PID,
            PREFIX,
            USERS,
            PASSWORD,
            value("sessions", "N", "sessions to hold"),
        ],
        free: false,
    },
    Command {
        name: "startup",
        about: "exec to greeting; the tool adds --listen 127.0.0.1:PORT to the ARGs after --",
        options: &[
            value("runs", "N", "starts to time (21)"),
            value("bin", "PATH", "the server binary"),
        ],
        free: true,
    },
    Command {
        name: "tcp",
        about: "loopback TCP throughput, for reference",
        options: &[value("megabytes", "N", "how much to send")],
        free: false,
    },
    Command {
        name: "cat",
        about: "reading a file from the page cache, for reference",
        options: &[value("file", "FILE", "the file to read")],
        free: false,
    },
];

pub const MBOX: Command = Command {
    name: "mbox",
    about: "writes an mbox of numbered messages for the scenarios",
    options: &[
        value("out", "FILE", "the mbox to write"),
        value("messages", "N", "how many messages"),
        value("octets", "N", "each message's size on disk"),
        flag("vary", "sizes from half to one and a half times --octets"),
        TAG,
    ],
    free: false,
};

pub const REPORT: Command = Command {
    name: "report",
    about: "prints the table of a results file; fails on errors or lost mail",
    options: &[
        value("results", "FILE", "the results the scenarios appended"),
        value("peer", "NAME", "the peer's column (dovecot)"),
        flag("smoke", "no targets: the sizes were too small to judge"),
    ],
    free: false,
};

/// Parsed options: values by name, flags present, and the free words.
pub struct Args {
    values: HashMap<&'static str, String>,
    flags: Vec<&'static str>,
    pub rest: Vec<String>,
}

impl Args {
    /// Parses `words` against the command's options (and `extra`, those every command of its
    /// kind shares). `Ok(None)` when --help was asked for and the usage printed.
    pub fn parse(
        usage: &str,
        command: &Command,
        extra: &[Opt],
        words: &[String],
    ) -> Outcome<Option<Args>> {
        let all = || command.options.iter().chain(extra);
        let mut options = Options::new();
        options.optflag("h", "help", "print this help");
        for opt in all() {
            if opt.hint.is_empty() {
                options.optflag("", opt.name, opt.about);
            } else {
                options.optopt("", opt.name, opt.about, opt.hint);
            }
        }
        let brief = format!("usage: {usage} [options]\n{}", command.about);
        let matches = options
            .parse(words)
            .map_err(|e| fail!("{e}\n{}", options.usage(&brief)))?;
        if matches.opt_present("help") {
            println!("{}", options.usage(&brief));
            return Ok(None);
        }
        if !command.free && !matches.free.is_empty() {
            return Err(fail!(
                "unexpected argument {:?}\n{}",
                matches.free[0],
                options.usage(&brief)
            ));
        }
        let mut args = Args {
            values: HashMap::new(),
            flags: Vec::new(),
            rest: matches.free.clone(),
        };
        for opt in all() {
            if opt.hint.is_empty() {
                if matches.opt_present(opt.name) {
                    args.flags.push(opt.name);
                }
            } else if let Some(text) = matches.opt_str(opt.name) {
                args.values.insert(opt.name, text);
            }
        }
        Ok(Some(args))
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
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

/// The options every scenario takes besides its own.
pub const SCENARIO_COMMON: &[Opt] = &[SERVER, RESULTS];
