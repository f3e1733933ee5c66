//! The chat template: the model's own Jinja template (`tokenizer.chat_template`) rendered with
//! minijinja the way Hugging Face's `apply_chat_template` renders it.

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, Value, context};

use super::LocalError;

/// ChatML, used when the GGUF carries no template (or one minijinja cannot compile).
pub(super) const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const NAME: &str = "chat";

/// A compiled chat template.
pub(super) struct ChatTemplate {
    env: Environment<'static>,
    /// False when this is the ChatML fallback.
    pub(super) from_gguf: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("from_gguf", &self.from_gguf)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles the GGUF's template, or ChatML when there is none or it does not compile.
    pub(super) fn new(source: Option<&str>) -> Result<Self, LocalError> {
        if let Some(source) = source {
            match compile(source.to_string()) {
                Ok(env) => {
                    return Ok(Self {
                        env,
                        from_gguf: true,
                    });
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "the model's chat template does not compile; using ChatML"
                ),
            }
        }
        let env = compile(CHATML.to_string()).map_err(|e| LocalError::Template(e.to_string()))?;
        Ok(Self {
            env,
            from_gguf: false,
        })
    }

    /// The prompt for `messages` ((role, content) pairs), ending with the assistant's turn
    /// opened.
    pub(super) fn render(
        &self,
        messages: &[(&str, &str)],
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, LocalError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|&(role, content)| context! { role => role, content => content })
            .collect();
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| LocalError::Template(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => bos_token,
                eos_token => eos_token,
            })
            .map_err(|e| LocalError::Template(describe(&e)))
    }
}

fn compile(source: String) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    // transformers renders chat templates with these two on.
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        },
    );
    env.add_template_owned(NAME, source)?;
    Ok(env)
}

/// minijinja's message plus the template's own `raise_exception` text, which is the part a user
/// can act on ("Conversation roles must alternate user/assistant/...").
fn describe(error: &Error) -> String {
    match error.detail() {
        Some(detail) if !error.to_string().contains(detail) => format!("{error}: {detail}"),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &ChatTemplate, messages: &[(&str, &str)]) -> Result<String, LocalError> {
        template.render(messages, "<s>", "</s>")
    }

    #[test]
    fn no_template_means_chatml() {
        let t = ChatTemplate::new(None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!t.from_gguf);
        let out = render(&t, &[("user", "Hi")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_template_that_does_not_compile_falls_back_to_chatml() {
        let t =
            ChatTemplate::new(Some("{% for m in messages %}")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!t.from_gguf);
    }

    #[test]
    fn hugging_face_idioms_render() {
        // bos_token, Python string methods, raise_exception and trim/lstrip blocks.
        let source = "{{ bos_token }}{% for m in messages %}
    {% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}
[{{ m['role'] }}] {{ m['content'].strip() }}{{ eos_token }}
{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
        let t = ChatTemplate::new(Some(source)).unwrap_or_else(|e| panic!("{e}"));
        assert!(t.from_gguf);
        let out = render(&t, &[("user", "  Hi  "), ("assistant", "Hello")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, "<s>[user] Hi</s>\n[assistant] Hello</s>\n[assistant]");
        match render(&t, &[("system", "x")]) {
            Ok(out) => panic!("rendered {out:?}"),
            Err(e) => assert!(e.to_string().contains("no system role"), "{e}"),
        }
    }
}
