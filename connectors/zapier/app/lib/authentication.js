'use strict';
const { api } = require('./http');

module.exports = {
  type: 'custom',
  fields: [
    {
      key: 'hub_url',
      label: 'Hub URL',
      required: true,
      type: 'string',
      helpText: 'The address of your coexhub, e.g. `https://hub.example.com`.',
    },
    {
      key: 'api_key',
      label: 'API key',
      required: true,
      type: 'password',
      helpText: 'A workspace API key (`chk_…`), created with `POST /api/v1/workspace/keys`.',
    },
  ],
  test: async (z, bundle) => (await z.request({ url: api(bundle, '/me') })).data,
  connectionLabel: (z, bundle) => bundle.inputData.workspace.name,
};
