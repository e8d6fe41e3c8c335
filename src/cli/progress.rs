//! Progress of a long command: a bar on a terminal (stderr), plain lines otherwise.

use std::io::IsTerminal;

/// Progress over `total` steps.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Starts it; a bar only when stderr is a terminal and `NO_COLOR` is not set.
    pub fn new(total: u64, label: &'static str) -> Progress {
        let bar = (std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() && total > 1).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_message(label);
            if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} {eta}") {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar }
    }

    /// A line of output, above the bar when there is one.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => out!("{text}"),
        }
    }

    /// One step done.
    pub fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// All done.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
