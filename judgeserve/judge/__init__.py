"""The LLM judge: rubrics (YAML), prompts (Jinja), scoring, backends and Ray Serve hosting."""
