"""Events and messaging: CloudEvents envelope, outbox, consumers, bus backends.

Import from the submodules (this package re-exports nothing, so importing a
backend never pulls in the others):

- ``bus``: the MessageBus protocol; ``local_bus``: the SQLite backend;
- ``topology``: topics, event types and consumer groups;
- ``envelope``: CloudEvent, EventPayload, EventRegistry;
- ``models``: OutboxMixin, InboxMixin, DeadLetterMixin;
- ``outbox``: EventPublisher, OutboxRelay;
- ``consumer``: ConsumerRunner, EventDispatcher, IncomingEvent;
- ``dead_letters``: list/replay/discard and the admin router;
- ``lifespan``: messaging_lifespan for create_app, bus_factory;
- ``settings``: MessagingSettings (env), RelaySettings, ConsumerSettings;
- ``testing``: eventually, FlakyBus.

See docs/messaging.md for the design choices.
"""
