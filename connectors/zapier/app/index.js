'use strict';
// coexhub for Zapier: WhatsApp Coexistence events as REST-hook triggers, sends and contact
// changes as actions. The hub side is connectors/zapier/ in the hub; docs/connectors/zapier.md.
const authentication = require('./lib/authentication');
const { addApiKey, handleHubErrors } = require('./lib/http');
const { triggers } = require('./lib/triggers');
const { creates } = require('./lib/creates');

module.exports = {
  version: require('./package.json').version,
  platformVersion: require('zapier-platform-core').version,
  authentication,
  beforeRequest: [addApiKey],
  afterResponse: [handleHubErrors],
  triggers,
  creates,
  searches: {},
  resources: {},
};
