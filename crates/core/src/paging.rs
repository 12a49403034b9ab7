use serde::Serialize;

use crate::CommandError;

/// A validated page request: `pageNumber` is 1-based, `pageSize` is 1..=100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    number: u64,
    size: u64,
}

impl PageRequest {
    pub const DEFAULT_SIZE: u64 = 10;
    pub const MAX_SIZE: u64 = 100;

    /// Checks the wire values (defaults: page 1, size 10).
    pub fn parse(number: Option<u64>, size: Option<u64>) -> Result<Self, CommandError> {
        let number = number.unwrap_or(1);
        let size = size.unwrap_or(Self::DEFAULT_SIZE);
        let mut errors = Vec::new();
        if number == 0 {
            errors.push("pageNumber must be 1 or more".to_owned());
        }
        if size == 0 || size > Self::MAX_SIZE {
            errors.push(format!("pageSize must be between 1 and {}", Self::MAX_SIZE));
        }
        if errors.is_empty() { Ok(Self { number, size }) } else { Err(CommandError::Validation(errors)) }
    }

    pub fn number(self) -> u64 {
        self.number
    }

    pub fn size(self) -> u64 {
        self.size
    }

    pub fn offset(self) -> u64 {
        (self.number - 1) * self.size
    }
}

/// One page of a list query.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total_count: u64,
    pub page_number: u64,
    pub page_size: u64,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, total_count: u64, request: PageRequest) -> Self {
        Self { items, total_count, page_number: request.number, page_size: request.size }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let page = PageRequest::parse(None, None).ok();
        assert_eq!(page.map(|p| (p.number(), p.size(), p.offset())), Some((1, 10, 0)));
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(None, Some(101)).is_err());
        assert_eq!(PageRequest::parse(Some(3), Some(20)).map(|p| p.offset()).ok(), Some(40));
    }
}
