// The model engine's typed surface.
export * from './model.js';
export * from './data.js';
export * from './train-base.js';
export * from './train-adapter.js';
export * from './limits.js';
export * from './generate.js';
