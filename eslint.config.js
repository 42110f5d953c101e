// ESLint flat config. Besides the usual TypeScript rules it keeps src/ layered:
//   api → runtime | registry | grpc → containerd | agentapi → controller | agent → cmd
// (grpc is what every gRPC boundary shares: the status-code table and the single-copy bytes encoder.)
// Arrows point one way: a layer imports only from layers to its left (and generated/).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layers = ['api', 'runtime', 'registry', 'grpc', 'containerd', 'agentapi', 'controller', 'agent', 'cmd'];

/** What each layer may NOT import (folder names under src/). */
const forbidden = {
  api: ['runtime', 'registry', 'grpc', 'containerd', 'agentapi', 'controller', 'agent', 'cmd'],
  runtime: ['registry', 'grpc', 'containerd', 'agentapi', 'controller', 'agent', 'cmd'],
  registry: ['grpc', 'containerd', 'agentapi', 'controller', 'agent', 'cmd'],
  grpc: ['runtime', 'registry', 'containerd', 'agentapi', 'controller', 'agent', 'cmd'],
  containerd: ['registry', 'agentapi', 'controller', 'agent', 'cmd'],
  agentapi: ['registry', 'containerd', 'controller', 'agent', 'cmd'],
  controller: ['containerd', 'agent', 'cmd'],
  agent: ['controller', 'cmd'],
  cmd: [],
};

const layerRules = layers.map((layer) => ({
  files: [`src/${layer}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: forbidden[layer].map((other) => ({
          // generated/ sits beside src/ and may share folder names (generated/proto/tote/agent): never a layer.
          group: [`**/${other}/*`, `**/${other}/**`, '!**/generated/**'],
          message: `src/${layer} must not import src/${other}: layers are api → runtime/registry/grpc → containerd/agentapi → controller/agent → cmd.`,
        })),
      },
    ],
  },
}));

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'generated/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2024, sourceType: 'module' },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-syntax': [
        'error',
        {
          selector: 'TSEnumDeclaration',
          message: 'Use a const object or a union of literals: Node runs erasable TypeScript only.',
        },
      ],
      eqeqeq: ['error', 'always'],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/runtime/config/**'],
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'Read configuration through src/runtime/config only.' },
      ],
    },
  },
  ...layerRules,
);
