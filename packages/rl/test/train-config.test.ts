import { describe, expect, it } from 'vitest';
import { defaultTrainConfig, parseTrainConfig } from '../src/config/train-config.js';
import { actionPart } from '@mlagent/env';
import { policyChat, policyMessages } from '../src/train/prompt.js';

// The fields the PPO loop and `mlagent train` added to the config, and the compact prompt form.
describe('training-loop config fields', () => {
  it('have documented defaults, and the tiny preset keeps prompts short', () => {
    const d = defaultTrainConfig().ppo;
    expect(d).toMatchObject({ historyWindow: 5, compactPrompts: false, maxObservationChars: 10000, poolSampling: 'by-task', rewardVariant: 'v1' });
    const t = defaultTrainConfig('tiny');
    expect(t.ppo).toMatchObject({ historyWindow: 1, compactPrompts: true, advantage: 'grpo' });
    expect(t.ppo.statesPerIteration * t.ppo.samplesPerState).toBeGreaterThanOrEqual(t.ppo.minibatchSize);
  });

  it('reject bad values, each naming its field', () => {
    const bad = { ppo: { historyWindow: -1, compactPrompts: 'yes', maxObservationChars: 10, poolSampling: 'random', rewardVariant: 'v3' } };
    let message = '';
    try {
      parseTrainConfig(bad, { source: 'bad.yaml' });
    } catch (e) {
      message = (e as Error).message;
    }
    for (const field of ['ppo.historyWindow', 'ppo.compactPrompts', 'ppo.maxObservationChars', 'ppo.poolSampling', 'ppo.rewardVariant']) expect(message).toContain(field);
  });
});

describe('compact prompts', () => {
  const response = 'Reflection: none yet.\nThought: look around.\nAction: List Files\nAction Input: {\n    "dir_path": "."\n}';
  const messages = [
    { role: 'system' as const, content: 'long action list' },
    { role: 'user' as const, content: 'the task' },
    { role: 'assistant' as const, content: response },
    { role: 'user' as const, content: 'Observation: train.py' },
  ];

  it('keep the Action and Action Input of a response', () => {
    expect(actionPart(response)).toBe('Action: List Files\nAction Input: {\n    "dir_path": "."\n}');
    expect(actionPart('no action here')).toBe('no action here');
  });

  it('drop the system message and compact assistant turns; the full form is unchanged', () => {
    expect(policyMessages(messages, false)).toEqual(messages);
    expect(policyMessages(messages, true)).toEqual([messages[1], { role: 'assistant', content: actionPart(response) }, messages[3]]);
    expect(policyChat(messages, response, true).at(-1)).toEqual({ role: 'assistant', content: actionPart(response) });
  });
});
