use std::{borrow::Cow, fmt, future::Future, pin::Pin, sync::Arc};

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, value::RawValue};

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

/// What a command author writes: the permission the command needs, what it answers, and its
/// handler.
pub trait Handler: Send + Sync + 'static {
    /// The permission this command requires. There is no default on purpose: a command cannot be
    /// added without saying who may run it.
    const PERMISSION: Permission;

    /// What a success answers as the envelope's `data`. Its JSON Schema is the command's answer
    /// in the catalog, `docs/commands.md` and the API document.
    type Answer: Serialize + JsonSchema;

    fn handle(&self, ctx: &Context) -> impl Future<Output = Result<Answered<Self::Answer>, CommandError>> + Send;
}

/// A handler's success: its data, of the handler's declared answer type, and its message.
#[derive(Debug)]
pub struct Answered<T> {
    data: AnsweredData<T>,
    message: Cow<'static, str>,
}

#[derive(Debug)]
enum AnsweredData<T> {
    Typed(T),
    /// A `T` built and serialized once, shared by every answer that carries it (a cached view).
    Shared(Arc<SharedJson>),
}

impl<T: Serialize> Answered<T> {
    pub fn new(data: T, message: impl Into<Cow<'static, str>>) -> Self {
        Self { data: AnsweredData::Typed(data), message: message.into() }
    }

    /// As [`new`](Self::new), already wrapped for a handler's tail.
    pub fn ok(data: T, message: impl Into<Cow<'static, str>>) -> Result<Self, CommandError> {
        Ok(Self::new(data, message))
    }

    /// `shared` holds a `T`, built once and kept (see [`ReplyData::Shared`]).
    pub fn shared(shared: Arc<SharedJson>, message: impl Into<Cow<'static, str>>) -> Self {
        Self { data: AnsweredData::Shared(shared), message: message.into() }
    }

    /// The reply the bus sends: the data serialized. A value that cannot be serialized is an
    /// internal error.
    pub fn into_reply(self) -> Result<Reply, CommandError> {
        let data = match self.data {
            AnsweredData::Typed(data) => ReplyData::Value(serde_json::to_value(data).map_err(CommandError::internal)?),
            AnsweredData::Shared(shared) => ReplyData::Shared(shared),
        };
        Ok(Reply { data, message: self.message })
    }
}

/// A successful result: the envelope's `data` and `message`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub data: ReplyData,
    /// Nearly always a literal: borrowed, it costs a request no allocation to make, log and send.
    pub message: Cow<'static, str>,
}

impl Reply {
    /// Serializes `data`. A value that cannot be serialized is an internal error.
    pub fn new(data: impl Serialize, message: impl Into<Cow<'static, str>>) -> Result<Self, CommandError> {
        let data = serde_json::to_value(data).map_err(CommandError::internal)?;
        Ok(Self { data: ReplyData::Value(data), message: message.into() })
    }
}

/// A reply's `data`.
#[derive(Debug, Clone)]
pub enum ReplyData {
    /// Built for this reply.
    Value(Value),
    /// Built once and shared by every reply that carries it (a cached answer): a reply takes a
    /// reference instead of copying the tree, and sending or logging it copies its text instead
    /// of serializing the tree again.
    Shared(Arc<SharedJson>),
}

impl ReplyData {
    /// The data as a tree, for callers that read into it (chain steps, scripts, processes).
    pub fn into_value(self) -> Value {
        match self {
            Self::Value(value) => value,
            Self::Shared(shared) => shared.value.clone(),
        }
    }

    /// The data as JSON text.
    pub fn to_text(&self) -> Result<Arc<str>, serde_json::Error> {
        match self {
            Self::Value(value) => serde_json::to_string(value).map(Arc::from),
            Self::Shared(shared) => Ok(Arc::clone(&shared.text)),
        }
    }
}

impl From<Value> for ReplyData {
    fn from(value: Value) -> Self {
        Self::Value(value)
    }
}

impl Serialize for ReplyData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(value) => value.serialize(serializer),
            Self::Shared(shared) => shared.raw.serialize(serializer),
        }
    }
}

/// JSON kept as a tree and as text, serialized once.
#[derive(Debug)]
pub struct SharedJson {
    value: Value,
    /// The text as serde writes it into a document, verbatim.
    raw: Box<RawValue>,
    /// The same text, for the inbound log's writer, which binds shared text without copying it.
    text: Arc<str>,
}

impl SharedJson {
    pub fn new(value: Value) -> Result<Self, serde_json::Error> {
        let raw = serde_json::value::to_raw_value(&value)?;
        let text = Arc::from(raw.get());
        Ok(Self { value, raw, text })
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
                ::std::boxed::Box::pin(async move { $crate::Handler::handle(self, ctx).await?.into_reply() })
            }
        }

        $crate::__private::inventory::submit! {
            $crate::CommandInfo::new(
                $name,
                <$ty as $crate::Handler>::PERMISSION,
                || $crate::__private::schemars::schema_for!($ty),
                $crate::__private::answer_schema::<<$ty as $crate::Handler>::Answer>,
            )
        }
    };
}
