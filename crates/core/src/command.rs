use std::{fmt, future::Future, pin::Pin};

use serde::Serialize;

use crate::{CommandError, Context, Permission};

/// The future a command's execution returns: its reply as JSON, or a client-facing error.
pub type CommandFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, CommandError>> + Send + 'a>>;

/// A deserialized command of any type.
pub type BoxedCommand = Box<dyn Command>;

/// Every operation of the bus. The body `{"$type": "Name", ...fields}` deserializes, through
/// typetag, into the type registered under that name.
///
/// Don't implement this by hand: implement [`Handler`] and register the type with
/// [`register_command!`](crate::register_command), which implements this trait, fixes the wire name
/// and records the command in the catalog in one step.
#[typetag::deserialize(tag = "$type")]
pub trait Command: Send + Sync + fmt::Debug {
    /// The wire name (`$type`).
    fn name(&self) -> &'static str;
    /// What the caller must be allowed to do.
    fn permission(&self) -> Permission;
    /// Runs the command. The caller has already checked [`Command::permission`].
    fn execute<'a>(&'a self, ctx: &'a Context) -> CommandFuture<'a>;
}

/// What a command author writes: the permission the command needs, and its handler.
pub trait Handler: Send + Sync + 'static {
    /// The permission this command requires. There is no default on purpose: a command cannot be
    /// added without saying who may run it.
    const PERMISSION: Permission;

    fn handle(&self, ctx: &Context) -> impl Future<Output = Result<Reply, CommandError>> + Send;
}

/// A successful result: the envelope's `data` and `message`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub data: serde_json::Value,
    pub message: String,
}

impl Reply {
    /// Serializes `data`. A value that cannot be serialized is an internal error.
    pub fn new(data: impl Serialize, message: impl Into<String>) -> Result<Self, CommandError> {
        let data = serde_json::to_value(data).map_err(CommandError::internal)?;
        Ok(Self { data, message: message.into() })
    }
}

/// Registers a [`Handler`] type as a bus command under an explicit wire name.
///
/// ```text
/// hookbus_core::register_command!("GetWebHookConfigByIdQuery" => GetWebHookConfigByIdQuery);
/// ```
///
/// The wire name is given once, here, and used both for typetag's dispatch and for the catalog, so a
/// Rust rename never changes it. The type must implement `Deserialize` and `JsonSchema`; the
/// calling crate must depend on `typetag`.
#[macro_export]
macro_rules! register_command {
    ($name:tt => $ty:ty) => {
        #[::typetag::deserialize(name = $name)]
        impl $crate::Command for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn permission(&self) -> $crate::Permission {
                <$ty as $crate::Handler>::PERMISSION
            }
            fn execute<'a>(&'a self, ctx: &'a $crate::Context) -> $crate::CommandFuture<'a> {
                ::std::boxed::Box::pin($crate::Handler::handle(self, ctx))
            }
        }

        $crate::__private::inventory::submit! {
            $crate::CommandInfo::new(
                $name,
                <$ty as $crate::Handler>::PERMISSION,
                || $crate::__private::schemars::schema_for!($ty),
            )
        }
    };
}
