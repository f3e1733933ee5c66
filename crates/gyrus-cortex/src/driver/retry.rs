//! Wrappers that make a cortex dependable: [`Retry`] tries one driver again after retryable
//! failures; [`Fallback`] moves on to the next driver.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{Driver, DriverError, DriverFuture, EventStream};
use crate::types::{ChatRequest, ChatResponse};

/// When and how often [`Retry`] tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The wait before the second attempt; doubled for each attempt after it.
    pub base_delay: Duration,
    /// The longest computed wait.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a vendor asking for more fails the call at once,
    /// so the router can pick another cortex instead of stalling.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after `error`, or `None` to give up.
    fn delay(&self, attempt: u32, error: &DriverError) -> Option<Duration> {
        if !error.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        if let DriverError::RateLimited {
            retry_after: Some(wait),
            ..
        } = error
        {
            return (*wait <= self.max_retry_after).then_some(*wait);
        }
        // Exponential backoff with "equal jitter": half fixed, half random, so many clients
        // that failed together do not come back together.
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
            .min(self.max_delay);
        let half = exp / 2;
        let jitter = half.mul_f64(random_unit());
        Some(half + jitter)
    }
}

/// A number in [0, 1), random enough for jitter, without a dependency.
fn random_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Retries a driver's calls after retryable failures ([`DriverError::is_retryable`]), with
/// exponential backoff and jitter, honouring the vendor's `Retry-After`.
///
/// A stream is retried only while it has yielded nothing: once an event went to the caller, a
/// failure ends the stream (the caller has shown half an answer).
#[derive(Debug, Clone)]
pub struct Retry {
    inner: Arc<dyn Driver>,
    policy: RetryPolicy,
}

impl Retry {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Driver>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    async fn run<'a, T>(
        &'a self,
        mut call: impl FnMut() -> DriverFuture<'a, T> + Send + 'a,
    ) -> Result<T, DriverError> {
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(error) => match self.policy.delay(attempt, &error) {
                    Some(wait) => {
                        tracing::debug!(driver = self.inner.name(), attempt, ?wait, %error, "retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return Err(error),
                },
            }
        }
    }
}

impl Driver for Retry {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, ChatResponse> {
        Box::pin(self.run(move || self.inner.chat(request)))
    }

    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, EventStream> {
        Box::pin(self.run(move || {
            Box::pin(async move {
                let mut stream = self.inner.chat_stream(request).await?;
                // Wait for the first item: a failure before anything was yielded can still be
                // retried.
                match stream.next().await {
                    Some(Err(error)) => Err(error),
                    Some(Ok(first)) => Ok(futures_util::stream::once(async move { Ok(first) })
                        .chain(stream)
                        .boxed()),
                    None => Ok(futures_util::stream::empty().boxed()),
                }
            })
        }))
    }

    fn embed<'a>(&'a self, model: &'a str, texts: &'a [String]) -> DriverFuture<'a, Vec<Vec<f32>>> {
        Box::pin(self.run(move || self.inner.embed(model, texts)))
    }
}

/// Tries drivers in order: on a retryable failure of one, the next gets the request (with its
/// own model, if one was given). A failure that is not retryable (bad key, bad request) is
/// returned at once: another cortex would not fix the request.
#[derive(Debug, Clone)]
pub struct Fallback {
    name: String,
    chain: Vec<(Arc<dyn Driver>, Option<String>)>,
}

impl Fallback {
    /// An empty chain called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            chain: Vec::new(),
        }
    }

    /// Adds a driver that gets the request as it is.
    pub fn then(mut self, driver: Arc<dyn Driver>) -> Self {
        self.chain.push((driver, None));
        self
    }

    /// Adds a driver that gets the request with `model` in place of the request's model.
    pub fn then_with_model(mut self, driver: Arc<dyn Driver>, model: impl Into<String>) -> Self {
        self.chain.push((driver, Some(model.into())));
        self
    }

    async fn run<T>(
        &self,
        request: &ChatRequest,
        call: for<'b> fn(&'b dyn Driver, &'b ChatRequest) -> DriverFuture<'b, T>,
    ) -> Result<T, DriverError> {
        let mut last = DriverError::Unsupported(format!("fallback chain {} is empty", self.name));
        for (driver, model) in &self.chain {
            let result = match model {
                Some(model) => {
                    let mut request = request.clone();
                    request.model = model.clone();
                    call(driver.as_ref(), &request).await
                }
                None => call(driver.as_ref(), request).await,
            };
            match result {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retryable() => {
                    tracing::debug!(chain = %self.name, driver = driver.name(), %error, "falling back");
                    last = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }
}

impl Driver for Fallback {
    fn name(&self) -> &str {
        &self.name
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, ChatResponse> {
        Box::pin(self.run(request, |driver, request| driver.chat(request)))
    }

    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> DriverFuture<'a, EventStream> {
        Box::pin(self.run(request, |driver, request| driver.chat_stream(request)))
    }

    fn embed<'a>(&'a self, model: &'a str, texts: &'a [String]) -> DriverFuture<'a, Vec<Vec<f32>>> {
        Box::pin(async move {
            let mut last =
                DriverError::Unsupported(format!("fallback chain {} is empty", self.name));
            for (driver, _) in &self.chain {
                match driver.embed(model, texts).await {
                    Ok(vectors) => return Ok(vectors),
                    Err(error) if error.is_retryable() => last = error,
                    Err(error) => return Err(error),
                }
            }
            Err(last)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn delay_follows_policy() {
        let policy = RetryPolicy::default();
        let server = DriverError::Server {
            status: 500,
            message: String::new(),
        };
        let first = policy.delay(1, &server).unwrap();
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
        let second = policy.delay(2, &server).unwrap();
        assert!(second >= Duration::from_millis(500) && second <= Duration::from_secs(1));
        assert_eq!(policy.delay(3, &server), None, "attempts exhausted");
        assert_eq!(
            policy.delay(1, &DriverError::Auth("no".into())),
            None,
            "not retryable"
        );
        let limited = |secs| DriverError::RateLimited {
            retry_after: Some(Duration::from_secs(secs)),
            message: String::new(),
        };
        assert_eq!(policy.delay(1, &limited(2)), Some(Duration::from_secs(2)));
        assert_eq!(policy.delay(1, &limited(3600)), None, "too long a wait");
    }
}
