// Adapters, their encodings and the codec registry.
export * from './adapter.js';
export * from './codec.js';
