'use strict';
// The app against a live hub: HUB_URL and API_KEY (a workspace with a connected number and the
// approved template `order_update`), CUSTOMER (a number that wrote to it in the last 24 hours).
// tests/test_zapier_app.py in the hub starts that hub and runs `npm test`; without HUB_URL only
// the offline checks run.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const zapier = require('zapier-platform-core');
// what `zapier validate` runs: the app compiled, functions cleaned, checked against the schema
const { compileApp, validateApp } = require('zapier-platform-core/src/tools/schema');
const App = require('../index');
const { triggerKey, catalogue } = require('../lib/triggers');

const appTester = zapier.createAppTester(App);
const { HUB_URL, API_KEY, CUSTOMER } = process.env;
const live = HUB_URL ? test : test.skip;
const authData = { hub_url: `${HUB_URL}/`, api_key: API_KEY }; // a trailing slash is tolerated
const fresh = () => `+1415556${String(Math.floor(Math.random() * 1e4)).padStart(4, '0')}`;

const run = (path, inputData = {}, extra = {}) => {
  const [kind, key, ...rest] = path.split('.');
  const op = App[kind][key].operation;
  const method = rest.length ? op[rest[0]] : op.perform;
  return appTester(method, { authData, inputData, ...extra });
};

test('the app definition is valid for the Zapier platform', () => {
  assert.deepEqual(validateApp(compileApp(App)).map((e) => `${e.property}: ${e.message}`), []);
});

test('one REST-hook trigger per catalogue event, with a sample', () => {
  for (const event of catalogue.events) {
    const trigger = App.triggers[triggerKey(event.type)];
    assert.ok(trigger, event.type);
    assert.equal(trigger.operation.type, 'hook');
    assert.equal(trigger.operation.sample.type, event.type);
  }
});

live('the triggers are exactly the live hub\'s event types (core and shipped connectors)', async () => {
  const response = await fetch(`${HUB_URL}/api/v1/event-types`, { headers: { Authorization: `Bearer ${API_KEY}` } });
  assert.equal(response.status, 200);
  const body = await response.json();
  const listed = Array.isArray(body) ? body : body.event_types || body.data || body.events;
  const hub = listed.filter((e) => catalogue.sources.includes(e.source || 'core')).map((e) => e.name || e.type);
  assert.deepEqual(catalogue.events.map((e) => e.type).sort(), hub.sort());
});

live('authentication: the test names the workspace; a wrong key is refused clearly', async () => {
  const me = await appTester(App.authentication.test, { authData });
  assert.ok(me.workspace.id.startsWith('ws'));
  assert.equal(App.authentication.connectionLabel(null, { inputData: me }), me.workspace.name);
  await assert.rejects(appTester(App.authentication.test, { authData: { ...authData, api_key: 'chk_wrong' } }),
    /refused the API key/);
});

live('a REST hook: subscribe, list samples, perform, unsubscribe (twice is fine)', async () => {
  const key = triggerKey('message.received');
  const hook = await run(`triggers.${key}.performSubscribe`, {}, { targetUrl: 'http://127.0.0.1:9/zapier-hook' });
  assert.ok(hook.id);
  assert.equal(hook.event, 'message.received');
  const samples = await run(`triggers.${key}.performList`);
  assert.equal(samples[0].type, 'message.received'); // the customer's real message, newest first
  assert.equal(samples[0].data.contact.wa_id, CUSTOMER);
  assert.equal(samples[0].data.body.text.body, 'hello from a Zap test');
  const delivered = await run(`triggers.${key}`, {}, { cleanedRequest: samples[0] });
  assert.deepEqual(delivered, [samples[0]]);
  for (let i = 0; i < 2; i += 1) {
    const gone = await run(`triggers.${key}.performUnsubscribe`, {}, { subscribeData: hook });
    assert.equal(gone.removed, true);
  }
  await assert.rejects(run(`triggers.${key}.performSubscribe`, {}, { targetUrl: 'ftp://example.com/x' }));
});

live('dropdowns: connections and approved templates with their parameter count', async () => {
  const connections = await run('triggers.connection_choice');
  assert.ok(connections.length >= 1 && connections[0].id.startsWith('con'));
  const templates = await run('triggers.template_choice');
  const order = templates.find((t) => t.name === 'order_update');
  assert.equal(order.param_count, 1);
  assert.match(order.label, /1 parameter/);
});

live('send template and text; the hub\'s refusals reach the Zap as readable errors', async () => {
  const templates = await run('triggers.template_choice');
  const order = templates.find((t) => t.name === 'order_update');
  const fields = await appTester(App.creates.send_template.operation.inputFields[2],
    { authData, inputData: { template_id: String(order.id) } });
  assert.deepEqual(fields.map((f) => f.key), ['param_1']); // one input per {{n}} of the chosen template
  const sent = await run('creates.send_template', { to: fresh(), template_id: String(order.id), param_1: '#1001' });
  assert.equal(sent.status, 'queued');
  assert.deepEqual(sent.params, ['#1001']);
  await assert.rejects(run('creates.send_template', { to: fresh(), template_id: order.id }), /expects 1 parameter/);
  await assert.rejects(run('creates.send_text', { to: fresh(), text: 'out of the blue' }), /24-hour/);
  const text = await run('creates.send_text', { to: `+${CUSTOMER}`, text: 'Thanks for writing!' });
  assert.equal(text.kind, 'text');
});

live('contact actions: upsert, tag, untag, opt out (sends refused), opt in', async () => {
  const phone = fresh();
  const made = await run('creates.upsert_contact', { phone, full_name: 'Asha Rao', add_tags: ['zap'] });
  assert.deepEqual(made.tags, ['zap']);
  assert.deepEqual((await run('creates.add_tag', { phone, tag: 'vip' })).tags, ['zap', 'vip']);
  assert.deepEqual((await run('creates.remove_tag', { phone, tag: 'zap' })).tags, ['vip']);
  assert.equal((await run('creates.opt_out', { phone })).opted_out, true);
  const templates = await run('triggers.template_choice');
  const order = templates.find((t) => t.name === 'order_update');
  await assert.rejects(run('creates.send_template', { to: phone, template_id: order.id, param_1: 'x' }), /opted out/);
  assert.equal((await run('creates.opt_in', { phone })).opted_out, false);
  assert.equal((await run('creates.opt_out', { phone, marketing_only: true })).marketing_opted_out, true);
});
