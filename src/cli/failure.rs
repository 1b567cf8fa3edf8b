//! What stops a command: a library error, or arguments that do not go together, said in the command line's
//! words. The library never names a flag; only this side of the line does.

use headstart::Error;

pub enum Failure {
    Library(Error),
    /// Flags or inputs the command cannot take together.
    Usage(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Library(error)
    }
}

pub type Outcome<T = ()> = std::result::Result<T, Failure>;

pub fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}
