-- An agent token (issue #24, `jitgate token create --agent-for PERSON`): the person the agent
-- acts for. NULL for every other token.
ALTER TABLE api_tokens ADD COLUMN on_behalf_of TEXT;
