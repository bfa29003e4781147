// Tasks: the native task format, the registry, preparation, grading and the baseline runner.
export { listTasks, resolveTask } from './registry.js';
export type { RegistryOptions, TaskList } from './registry.js';
export { applyIdea, loadIdeas, loadTaskSpec, DEFAULT_DISK_MB, METRIC_NAMES, MODALITIES, TaskFormatError, validateIdeas, validateTaskSpec } from './spec.js';
export { prepareTask, removeTree } from './prepare.js';
export type { PrepareOptions } from './prepare.js';
export { gradeSubmission } from './grade.js';
export { cpuKernelPins, createWorkspace, taskSandboxEnv, taskSandboxLimits, taskSandboxPaths, TASK_WORKSPACE_FILES } from './workspace.js';
export { runBaseline, runInWorkspace } from './baseline.js';
export type { BaselineOptions, BaselineReport, BaselineResult } from './baseline.js';
export { DEFAULT_PYTHON, builtinTasksDir, corpusSourceDir, mlagentHome, taskCacheDir, userTasksDir } from './paths.js';
export type { GradeResult, MetricName, Modality, PreparedTask, TaskBudgets, TaskEntry, TaskIdea, TaskOrigin, TaskSpec, TaskSplit } from './types.js';
export { detectImportFormat, importTask } from './import.js';
export type { ImportFormat, ImportOptions } from './import.js';
