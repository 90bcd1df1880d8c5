'use strict';
// The actions: each one request to the hub's actions API, keyed by phone number. The hub runs
// the same checks as POST /api/v1/messages and answers what it refuses with a clear 422.
const { api } = require('./http');

const phone = { key: 'phone', label: 'Phone number', required: true, helpText: 'E.164, e.g. +14155552671' };
const to = { ...phone, key: 'to' };
const connection = {
  key: 'connection_id',
  label: 'From number',
  required: false,
  dynamic: 'connection_choice.id.label',
  helpText: 'Leave empty: the number the customer last wrote to (else the oldest active one).',
};

const post = (path) => async (z, bundle) => {
  const body = Object.fromEntries(Object.entries(bundle.inputData).filter(([, v]) => v !== undefined && v !== ''));
  return (await z.request({ url: api(bundle, path), method: 'POST', body: body })).data;
};

const contactChange = (key, label, description, extra, toBody) => ({
  key,
  noun: 'Contact',
  display: { label, description },
  operation: {
    inputFields: [phone, ...extra],
    perform: async (z, bundle) =>
      (await z.request({ url: api(bundle, '/actions/contact'), method: 'POST', body: toBody(bundle.inputData) })).data,
    sample: { id: 1, wa_id: '14155552671', full_name: 'Asha Rao', tags: ['vip'], opted_out: false },
  },
});

const yes = (v) => v === true || ['true', 'yes', '1'].includes(String(v).toLowerCase());

const sendSample = { id: 1, to: '14155552671', kind: 'template', status: 'queued', template_name: 'order_update' };

// One input per {{n}} of the chosen template's body (the hub says how many it has).
const templateParams = async (z, bundle) => {
  if (!bundle.inputData.template_id) return [];
  const templates = (await z.request({ url: api(bundle, '/zapier/templates') })).data;
  const chosen = templates.find((t) => String(t.id) === String(bundle.inputData.template_id));
  const count = chosen ? chosen.param_count : 0;
  return Array.from({ length: count }, (_, i) => ({
    key: `param_${i + 1}`,
    label: `Parameter {{${i + 1}}}`,
    required: true,
    helpText: `The value for {{${i + 1}}} in the template's body.`,
  }));
};

const sendTemplate = async (z, bundle) => {
  const { to: number, template_id: templateId, connection_id: connectionId } = bundle.inputData;
  const params = Object.keys(bundle.inputData)
    .filter((k) => /^param_\d+$/.test(k))
    .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))
    .map((k) => bundle.inputData[k]);
  const body = { to: number, template_id: String(templateId), params };
  if (connectionId) body.connection_id = connectionId;
  return (await z.request({ url: api(bundle, '/actions/send-template'), method: 'POST', body })).data;
};

const creates = [
  {
    key: 'send_template',
    noun: 'Message',
    display: { label: 'Send Template Message', description: 'Sends an approved WhatsApp template (any time).' },
    operation: {
      inputFields: [
        to,
        {
          key: 'template_id',
          label: 'Template',
          required: true,
          dynamic: 'template_choice.id.label',
          altersDynamicFields: true,
        },
        templateParams,
        connection,
      ],
      perform: sendTemplate,
      sample: sendSample,
    },
  },
  {
    key: 'send_text',
    noun: 'Message',
    display: {
      label: 'Send Text Message',
      description: 'Sends free text; WhatsApp allows it only within 24 hours of the customer\'s last message.',
    },
    operation: {
      inputFields: [to, { key: 'text', label: 'Text', required: true, type: 'text' }, connection],
      perform: post('/actions/send-text'),
      sample: { ...sendSample, kind: 'text', template_name: null, text: 'Hello!' },
    },
  },
  contactChange('upsert_contact', 'Create or Update Contact', 'Finds the contact by phone number or creates it.',
    [{ key: 'full_name', label: 'Full name' }, { key: 'first_name', label: 'First name' },
      { key: 'attributes', label: 'Attributes', dict: true }, { key: 'add_tags', label: 'Tags', list: true }],
    (d) => ({ phone: d.phone, full_name: d.full_name, first_name: d.first_name, attributes: d.attributes,
      add_tags: d.add_tags })),
  contactChange('add_tag', 'Add Tag to Contact', 'Adds a tag (the contact is created if new).',
    [{ key: 'tag', label: 'Tag', required: true }], (d) => ({ phone: d.phone, add_tags: [d.tag] })),
  contactChange('remove_tag', 'Remove Tag from Contact', 'Removes a tag from the contact.',
    [{ key: 'tag', label: 'Tag', required: true }], (d) => ({ phone: d.phone, remove_tags: [d.tag] })),
  contactChange('opt_out', 'Opt Out Contact', 'Stops every message to the contact (or marketing only).',
    [{ key: 'marketing_only', label: 'Marketing only', type: 'boolean', default: 'no' }],
    (d) => (yes(d.marketing_only) ? { phone: d.phone, marketing_opted_out: true } : { phone: d.phone, opted_out: true })),
  contactChange('opt_in', 'Opt In Contact', 'Lifts the contact\'s opt-out (or the marketing opt-out only).',
    [{ key: 'marketing_only', label: 'Marketing only', type: 'boolean', default: 'no' }],
    (d) => (yes(d.marketing_only) ? { phone: d.phone, marketing_opted_out: false } : { phone: d.phone, opted_out: false })),
];

module.exports = { creates: Object.fromEntries(creates.map((c) => [c.key, c])) };
