'use strict';
// One REST-hook trigger per event of the hub's catalogue (events.json, written by
// `python -m connectors.zapier.events` from the same catalogue as GET /api/v1/event-types),
// plus the hidden triggers that feed the actions' dropdowns.
const catalogue = require('../events.json');
const { api } = require('./http');

const triggerKey = (type) => type.replace(/[^a-zA-Z0-9]+/g, '_');

const words = (type) => type.replace(/[._]+/g, ' ');

const hookTrigger = (event) => ({
  key: triggerKey(event.type),
  noun: words(event.type.split('.')[0]).replace(/^\w/, (c) => c.toUpperCase()),
  display: {
    label: `New ${words(event.type)} event`,
    hidden: event.type === 'test.event', // sent only to the subscription being tested, never to a Zap
    description: `Triggers on \`${event.type}\`: ${event.description}`.slice(0, 1000),
  },
  operation: {
    type: 'hook',
    performSubscribe: async (z, bundle) => {
      const response = await z.request({
        url: api(bundle, '/hooks'),
        method: 'POST',
        body: { target_url: bundle.targetUrl, event: event.type },
      });
      return response.data;
    },
    performUnsubscribe: async (z, bundle) => {
      const response = await z.request({
        url: api(bundle, `/hooks/${encodeURIComponent(bundle.subscribeData.id)}`),
        method: 'DELETE',
        skipThrowForStatus: true,
      });
      if (response.status >= 400 && response.status !== 404 && response.status !== 410) {
        response.throwForStatus(); // a hook already gone is unsubscribed
      }
      return { id: bundle.subscribeData.id, removed: true };
    },
    // the hub POSTs the event envelope (id, type, timestamp, data): one item per delivery
    perform: (z, bundle) => [bundle.cleanedRequest],
    performList: async (z, bundle) => (await z.request({ url: api(bundle, `/hooks/samples/${event.type}`) })).data,
    sample: event.example,
  },
});

const choiceTrigger = (key, noun, path, toChoice) => ({
  key,
  noun,
  display: { label: `List ${noun}s`, description: `Feeds the ${noun} dropdown.`, hidden: true },
  operation: {
    perform: async (z, bundle) => (await z.request({ url: api(bundle, path) })).data.map(toChoice),
  },
});

const dropdowns = [
  choiceTrigger('connection_choice', 'Connection', '/connections', (c) => ({
    id: c.id,
    label: `${c.display_phone_number || c.phone_number_id}${c.verified_name ? ` (${c.verified_name})` : ''}`,
    status: c.status,
  })),
  choiceTrigger('template_choice', 'Template', '/zapier/templates', (t) => ({
    id: t.id,
    label: t.label,
    name: t.name,
    language: t.language,
    param_count: t.param_count,
  })),
];

const all = [...catalogue.events.map(hookTrigger), ...dropdowns];

module.exports = { triggers: Object.fromEntries(all.map((t) => [t.key, t])), triggerKey, catalogue };
