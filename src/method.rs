//! The MCP method table, defined once: the session dispatches on it, the transports learn
//! from it what they carry, and metrics label by it. Any other method name is `Other`, so
//! an untrusted name never becomes a metric label (lesson 5).

/// An MCP method the router knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `initialize`
    Initialize,
    /// `ping`
    Ping,
    /// `tools/list`
    ToolsList,
    /// `tools/call`
    ToolsCall,
    /// `resources/list`
    ResourcesList,
    /// `resources/templates/list`
    ResourcesTemplatesList,
    /// `resources/read`
    ResourcesRead,
    /// `resources/subscribe`
    ResourcesSubscribe,
    /// `resources/unsubscribe`
    ResourcesUnsubscribe,
    /// `prompts/list`
    PromptsList,
    /// `prompts/get`
    PromptsGet,
    /// `completion/complete`
    CompletionComplete,
    /// `logging/setLevel`
    LoggingSetLevel,
    /// `sampling/createMessage`
    SamplingCreateMessage,
    /// `elicitation/create`
    ElicitationCreate,
    /// `roots/list`
    RootsList,
    /// `tasks/get`
    TasksGet,
    /// `tasks/result`
    TasksResult,
    /// `tasks/list`
    TasksList,
    /// `tasks/cancel`
    TasksCancel,
    /// `notifications/initialized`
    NotificationsInitialized,
    /// `notifications/cancelled`
    NotificationsCancelled,
    /// `notifications/progress`
    NotificationsProgress,
    /// `notifications/message`
    NotificationsMessage,
    /// `notifications/resources/updated`
    NotificationsResourcesUpdated,
    /// `notifications/resources/list_changed`
    NotificationsResourcesListChanged,
    /// `notifications/tools/list_changed`
    NotificationsToolsListChanged,
    /// `notifications/prompts/list_changed`
    NotificationsPromptsListChanged,
    /// `notifications/roots/list_changed`
    NotificationsRootsListChanged,
    /// `notifications/tasks/status`
    NotificationsTasksStatus,
    /// `notifications/elicitation/complete`
    NotificationsElicitationComplete,
    /// `server/discover` (2026-07-28)
    ServerDiscover,
    /// `subscriptions/listen` (2026-07-28)
    SubscriptionsListen,
    /// Any other method.
    Other,
}

impl Method {
    /// Every method, in the order metrics render them; `Other` last.
    pub const ALL: [Method; 34] = [
        Method::Initialize,
        Method::Ping,
        Method::ToolsList,
        Method::ToolsCall,
        Method::ResourcesList,
        Method::ResourcesTemplatesList,
        Method::ResourcesRead,
        Method::ResourcesSubscribe,
        Method::ResourcesUnsubscribe,
        Method::PromptsList,
        Method::PromptsGet,
        Method::CompletionComplete,
        Method::LoggingSetLevel,
        Method::SamplingCreateMessage,
        Method::ElicitationCreate,
        Method::RootsList,
        Method::TasksGet,
        Method::TasksResult,
        Method::TasksList,
        Method::TasksCancel,
        Method::NotificationsInitialized,
        Method::NotificationsCancelled,
        Method::NotificationsProgress,
        Method::NotificationsMessage,
        Method::NotificationsResourcesUpdated,
        Method::NotificationsResourcesListChanged,
        Method::NotificationsToolsListChanged,
        Method::NotificationsPromptsListChanged,
        Method::NotificationsRootsListChanged,
        Method::NotificationsTasksStatus,
        Method::NotificationsElicitationComplete,
        Method::ServerDiscover,
        Method::SubscriptionsListen,
        Method::Other,
    ];

    /// The method named `name`; `Other` for names outside the table. A `match` on string
    /// literals compiles to length and byte comparisons: no hashing, no allocation.
    pub fn parse(name: &str) -> Method {
        match name {
            "initialize" => Method::Initialize,
            "ping" => Method::Ping,
            "tools/list" => Method::ToolsList,
            "tools/call" => Method::ToolsCall,
            "resources/list" => Method::ResourcesList,
            "resources/templates/list" => Method::ResourcesTemplatesList,
            "resources/read" => Method::ResourcesRead,
            "resources/subscribe" => Method::ResourcesSubscribe,
            "resources/unsubscribe" => Method::ResourcesUnsubscribe,
            "prompts/list" => Method::PromptsList,
            "prompts/get" => Method::PromptsGet,
            "completion/complete" => Method::CompletionComplete,
            "logging/setLevel" => Method::LoggingSetLevel,
            "sampling/createMessage" => Method::SamplingCreateMessage,
            "elicitation/create" => Method::ElicitationCreate,
            "roots/list" => Method::RootsList,
            "tasks/get" => Method::TasksGet,
            "tasks/result" => Method::TasksResult,
            "tasks/list" => Method::TasksList,
            "tasks/cancel" => Method::TasksCancel,
            "notifications/initialized" => Method::NotificationsInitialized,
            "notifications/cancelled" => Method::NotificationsCancelled,
            "notifications/progress" => Method::NotificationsProgress,
            "notifications/message" => Method::NotificationsMessage,
            "notifications/resources/updated" => Method::NotificationsResourcesUpdated,
            "notifications/resources/list_changed" => Method::NotificationsResourcesListChanged,
            "notifications/tools/list_changed" => Method::NotificationsToolsListChanged,
            "notifications/prompts/list_changed" => Method::NotificationsPromptsListChanged,
            "notifications/roots/list_changed" => Method::NotificationsRootsListChanged,
            "notifications/tasks/status" => Method::NotificationsTasksStatus,
            "notifications/elicitation/complete" => Method::NotificationsElicitationComplete,
            "server/discover" => Method::ServerDiscover,
            "subscriptions/listen" => Method::SubscriptionsListen,
            _ => Method::Other,
        }
    }

    /// The method's name; `other` for `Other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Initialize => "initialize",
            Method::Ping => "ping",
            Method::ToolsList => "tools/list",
            Method::ToolsCall => "tools/call",
            Method::ResourcesList => "resources/list",
            Method::ResourcesTemplatesList => "resources/templates/list",
            Method::ResourcesRead => "resources/read",
            Method::ResourcesSubscribe => "resources/subscribe",
            Method::ResourcesUnsubscribe => "resources/unsubscribe",
            Method::PromptsList => "prompts/list",
            Method::PromptsGet => "prompts/get",
            Method::CompletionComplete => "completion/complete",
            Method::LoggingSetLevel => "logging/setLevel",
            Method::SamplingCreateMessage => "sampling/createMessage",
            Method::ElicitationCreate => "elicitation/create",
            Method::RootsList => "roots/list",
            Method::TasksGet => "tasks/get",
            Method::TasksResult => "tasks/result",
            Method::TasksList => "tasks/list",
            Method::TasksCancel => "tasks/cancel",
            Method::NotificationsInitialized => "notifications/initialized",
            Method::NotificationsCancelled => "notifications/cancelled",
            Method::NotificationsProgress => "notifications/progress",
            Method::NotificationsMessage => "notifications/message",
            Method::NotificationsResourcesUpdated => "notifications/resources/updated",
            Method::NotificationsResourcesListChanged => "notifications/resources/list_changed",
            Method::NotificationsToolsListChanged => "notifications/tools/list_changed",
            Method::NotificationsPromptsListChanged => "notifications/prompts/list_changed",
            Method::NotificationsRootsListChanged => "notifications/roots/list_changed",
            Method::NotificationsTasksStatus => "notifications/tasks/status",
            Method::NotificationsElicitationComplete => "notifications/elicitation/complete",
            Method::ServerDiscover => "server/discover",
            Method::SubscriptionsListen => "subscriptions/listen",
            Method::Other => "other",
        }
    }

    /// Its position in [`Method::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_positions_match_the_table() {
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            if *m != Method::Other {
                assert_eq!(Method::parse(m.as_str()), *m);
            }
        }
        assert_eq!(Method::parse("other"), Method::Other);
        assert_eq!(Method::parse("tools/call\u{0}"), Method::Other);
        assert_eq!(Method::parse(""), Method::Other);
    }
}
