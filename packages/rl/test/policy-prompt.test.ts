// What the policy agent shows the model in each prompt format. 'compact' must be exactly the form SFT and RL train
// on with ppo.compactPrompts (mlagent eval --prompt-format compact once kept past turns whole, so an adapter trained
// compact was evaluated on prompts it had never seen: 62.5% format errors on house-prices against 0%).
import { describe, expect, it } from 'vitest';
import type { PreparedTask } from '@mlagent/env';
import type { ChatMessage } from '@mlagent/policy';
import type { AgentRequest } from '../src/eval/agent.js';
import { policyChatFor } from '../src/eval/policy-agent.js';
import { policyChat } from '../src/train/prompt.js';

const messages: ChatMessage[] = [
  { role: 'system', content: 'You are an agent. Actions: List Files, ...' },
  { role: 'user', content: 'Research problem: predict house prices.' },
  { role: 'assistant', content: 'Reflection: none yet\nThought: look around\nAction: List Files\nAction Input: {"dir_path": "."}' },
  { role: 'user', content: 'Observation: data/ train.py' },
];
const request = { id: 'house-prices/0000', task: {} as PreparedTask, index: 0, turn: { messages }, prompt: 'the whole state as one text' } as unknown as AgentRequest;

describe('policyChatFor', () => {
  it("'compact' is the training form: no system message, past assistant turns cut to their action", () => {
    const chat = policyChatFor(request, 'compact');
    expect(chat.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    expect(chat[1].content).toBe('Action: List Files\nAction Input: {"dir_path": "."}');
    // An SFT example of this state, without the response it learns.
    expect(chat).toEqual(policyChat(messages, 'Action: Final Answer', true).slice(0, -1));
  });

  it("'messages' keeps the chat as it is, 'prompt' sends the state as one user text", () => {
    expect(policyChatFor(request, 'messages')).toEqual(messages);
    expect(policyChat(messages, 'x', false).slice(0, -1)).toEqual(messages);
    expect(policyChatFor(request, 'prompt')).toEqual([{ role: 'user', content: 'the whole state as one text' }]);
  });
});
