"""LLM responses: drafting answers through an OpenAI-compatible endpoint, and auditing answers.

- `labelloop.model.responses.prompts`: prompt templates over task data fields;
- `labelloop.model.responses.llm`: the endpoint's settings, the client, and each draft's score;
- `labelloop.model.responses.draft_store`: drafts kept on disk, so none is made twice;
- `labelloop.model.responses.audit`: checks of human-written responses before export.
"""
